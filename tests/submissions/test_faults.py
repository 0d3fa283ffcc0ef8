"""Nothing lost, nothing stuck: faults injected into the real services while submissions run.

Each test kills or restarts something real (a worker's pool process, a whole worker, Redis, PostgreSQL,
dockerd) while a submission runs, then checks that every case ends scored exactly once (CaseResult rows
counted, scores equal to `evaluator.score_files` on the collected outputs) and that no job container and
no attempt's /output mount is left. Leases are 4 s and the sweep runs every 2 s, so recovery takes seconds.
Tests that restart shared services run under `flock -x /tmp/touchstone-services.lock` and leave them running.

Personas: carol's team submits; the poison job's team is dave's.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

import evaluator
from benchmarks.models import Phase
from submissions import inference, intake, sandbox, scoring
from submissions.models import AlgorithmImage, CaseResult, ExitReason, Job, Submission
from teams.models import Team
from tests.conftest import ROOT, free_port, reset_broker_connections, unavailable, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PHASE = "faults-final"
SERVICES_LOCK = "/tmp/touchstone-services.lock"
LEASE_S = 4
PREFIX = f"touchstone-faults-{os.getpid()}"
FAULT_ALGORITHM = '''
import json, os, sys, time
import nibabel as nib, numpy as np
cases = json.load(open("/input/cases.json"))["cases"]
time.sleep(float(os.environ.get("FAULT_SLEEP_S", "6")))
for case in cases:
    image = nib.load("/input/" + case["image"])
    labels = (np.asarray(image.dataobj) > 100).astype(np.uint8) * 5
    nib.save(nib.Nifti1Image(labels, image.affine), "/output/%s.nii.gz" % case["case_id"])
print("done", len(cases))
'''


# --- services this module owns ---------------------------------------------------------------------
class Redis:
    """A private Redis that a test may stop and start again on the same port (its data is lost, as in a crash)."""

    def __init__(self, directory: Path):
        self.port, self.directory, self.process = free_port(), directory, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        wait_until(lambda: _answers(client.ping), timeout_s=20, what="redis-server")

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _answers(call) -> bool:
    try:
        return bool(call())
    except Exception:  # noqa: BLE001
        return False


class Workers:
    """Real `celery worker` processes on this module's Redis: two inference, one scoring, one control (with beat)."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.processes = env, logs, {}

    def start(self, name: str, queues: str, *extra: str) -> None:
        log = open(self.logs / f"{name}.log", "a")
        log.write(f"\n=== start {time.time()}\n")
        log.flush()
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "touchstone_site", "worker", "-Q", queues, "-n", f"{name}@%h",
             "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat", *extra],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(lambda: self.log(name).split("=== start")[-1].count("ready."), timeout_s=60,
                   what=f"worker {name} to be ready")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def running(self, job: Job) -> tuple[str, int]:
        """The worker and pool process holding a job's lease (its owner is "<host>:<pid>:<random>")."""
        job.refresh_from_db()
        pid = int(job.lease_owner.split(":")[1])
        return next(name for name in self.processes if pid in self.pool_pids(name)), pid

    def pool_pids(self, name: str) -> list[int]:
        parent = self.processes[name].pid
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self, name: str) -> None:
        """SIGKILL the whole worker (main process and pool), as a host crash would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def fault_image(docker_client) -> str:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed. Run `make setup`.")
    context = Path(__file__).resolve().parent / ".fault-image"
    context.mkdir(exist_ok=True)
    (context / "algorithm.py").write_text(FAULT_ALGORITHM)
    (context / "Dockerfile").write_text(
        "FROM touchstone/base:latest\nCOPY algorithm.py /opt/algorithm.py\nUSER 1000\n"
        'ENTRYPOINT ["python3", "/opt/algorithm.py"]\n'
    )
    image, _ = docker_client.images.build(path=str(context), tag="touchstone-test/faults:latest", rm=True)
    shutil.rmtree(context, ignore_errors=True)
    return image.id


@pytest.fixture(scope="module")
def fault_services(django_db_setup, django_db_blocker, tmp_path_factory, data_root, fault_image):
    """This module's Redis and workers, with short leases and a fast sweep."""
    from touchstone_site.celery import app

    database = connection.settings_dict
    from urllib.parse import quote

    host = quote(database["HOST"] or "/var/run/postgresql", safe="")
    database_url = f"postgres://{host}{':' + str(database['PORT']) if database['PORT'] else ''}/{database['NAME']}"
    redis = Redis(tmp_path_factory.mktemp("faults-redis"))
    redis.start()
    logs = tmp_path_factory.mktemp("faults-logs")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis.url,
        "DATA_ROOT": str(data_root),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "PYTHONUNBUFFERED": "1",
        "TOUCHSTONE_SCORING_PROCESSES": "1",
        "TOUCHSTONE_SANDBOX_CONTAINER_PREFIX": PREFIX,
        "TOUCHSTONE_JOB_LEASE_S": str(LEASE_S),
        "TOUCHSTONE_SWEEP_INTERVAL_S": "2",
        "TOUCHSTONE_SWEEP_QUEUED_AFTER_S": "8",
        "TOUCHSTONE_SWEEP_QUEUED_MAX_WAIT_S": "30",
        "TOUCHSTONE_SWEEP_VALIDATING_AFTER_S": "8",
        "TOUCHSTONE_SCORING_DEADLINE_S": "30",
        "TOUCHSTONE_JOB_RETRY_DELAY_S": "1",
        "TOUCHSTONE_JOB_MAX_ATTEMPTS": "3",
        "TOUCHSTONE_DATABASE_RECONNECT_WAIT_S": "60",
        # Shorter than a job: Redis may hand a running job's message to another worker; the claim refuses it.
        "CELERY_VISIBILITY_TIMEOUT_S": "5",
    }
    workers = Workers(env, logs)
    workers.start("inference-a", "inference")
    workers.start("inference-b", "inference")
    workers.start("scoring", "scoring")
    workers.start("control", "control,default", "-B", "--schedule", str(logs / "beat-schedule"))
    saved = (app.conf.broker_url, app.conf.task_always_eager, settings.DATA_ROOT, settings.SANDBOX_CONTAINER_PREFIX)
    app.conf.broker_url, app.conf.task_always_eager = redis.url, False
    settings.DATA_ROOT, settings.SANDBOX_CONTAINER_PREFIX = data_root, PREFIX
    reset_broker_connections(app)
    yield {"redis": redis, "workers": workers, "data_root": data_root, "image_id": fault_image}
    workers.stop_all()
    redis.stop()
    app.conf.broker_url, app.conf.task_always_eager, settings.DATA_ROOT, settings.SANDBOX_CONTAINER_PREFIX = saved
    reset_broker_connections(app)


@pytest.fixture
def phase(fault_services) -> Phase:
    call_command(
        "make_synthetic_benchmark", slug="faults", size="test", cases_per_site=1, seed=3, shard_size=100,
        canary_size=100, time_limit_per_case_s=60, memory_mb=1024, submissions_per_day=20,
        stdout=open(os.devnull, "w"),
    )
    return Phase.objects.get(slug=PHASE)


def ready_image(team: Team, image_id: str) -> AlgorithmImage:
    """The fault image, already on this engine: validation finds it ready (the upload path is tested elsewhere)."""
    return AlgorithmImage.objects.create(team=team, sha256=image_id.split(":")[-1], size_bytes=1,
                                         tar_path="images/faults.tar", docker_image_id=image_id,
                                         state=AlgorithmImage.State.READY)


def submit(phase: Phase, image_id: str, team_name: str = "Carol Lab") -> Submission:
    team = Team.objects.create(slug=team_name.lower().replace(" ", "-"), name=team_name)
    return intake.submission_create(team=team, phase=phase, algorithm="faults", image=ready_image(team, image_id))


def wait_job(submission: Submission, predicate, what: str, timeout_s: float = 90) -> Job:
    return wait_until(lambda: next((j for j in Job.objects.filter(submission=submission) if predicate(j)), None),
                      timeout_s=timeout_s, what=what, interval_s=0.2)


def wait_final(submission: Submission, timeout_s: float = 150) -> Submission:
    def final():
        current = Submission.objects.get(pk=submission.pk)
        return current if current.state in Submission.FINAL_STATES else None

    return wait_until(final, timeout_s=timeout_s, what=f"submission {submission.pk} to end", interval_s=0.5)


def job_containers(docker_client) -> list[str]:
    listed = docker_client.api.containers(all=True, filters={"label": "touchstone.job"})
    return [name.lstrip("/") for c in listed for name in c["Names"] if name.lstrip("/").startswith(PREFIX)]


def attempt_mounts() -> list[str]:
    """The filesystems mounted under DATA_ROOT/jobs (each attempt's capped /output while it runs)."""
    return [f"{mount_point} ({filesystem})" for mount_point, filesystem in
            sandbox.mounts_under(Path(settings.DATA_ROOT) / "jobs")]


def assert_no_attempt_mounts_left() -> None:
    """Once the jobs ended no /output stays mounted: a killed worker's is unmounted by a reaper on this host."""
    try:
        wait_until(lambda: not attempt_mounts(), timeout_s=30, what="attempt /output mounts to be unmounted")
    except AssertionError:
        raise AssertionError(f"/output mounts left after the jobs ended: {attempt_mounts()}") from None


def assert_scored_exactly_once(submission: Submission, docker_client) -> None:
    """Every case scored once per organ, equal to the evaluator on the collected outputs; nothing left behind."""
    submission = wait_final(submission)
    assert submission.state == Submission.State.COMPLETED, submission.failure_reason
    phase = submission.phase
    organs = scoring.organ_specs(phase.benchmark)
    n_organs = phase.benchmark.organs.count()
    assert CaseResult.objects.filter(submission=submission).count() == phase.cases.count() * n_organs
    data_root = Path(settings.DATA_ROOT)
    for job in submission.jobs.all():
        assert job.state == Job.State.SUCCEEDED, (job.exit_reason, job.detail)
        for case in job.cases.all():
            prediction = inference.job_dir(job) / "predictions" / f"{case.case_id}.nii.gz"
            expected = evaluator.score_files(data_root / case.reference_path, prediction, organs)
            assert expected.refusal is None
            stored = {r.organ.label: r for r in CaseResult.objects.filter(submission=submission, case=case)}
            assert len(stored) == n_organs
            for organ_score in expected.organs:
                row = stored[organ_score.label]
                assert row.status == organ_score.status and row.job_id == job.pk
                for field in ("dsc", "nsd"):
                    value = getattr(organ_score, field)
                    assert getattr(row, field) is None if math.isnan(value) else getattr(row, field) == pytest.approx(value)
    wait_until(lambda: not job_containers(docker_client), timeout_s=30, what="job containers to be reaped")
    assert_no_attempt_mounts_left()


def _inherited_lock_fd() -> int | None:
    """The descriptor of the services' lock this process inherited (run as `flock -x LOCK pytest ...`), if any."""
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry) == SERVICES_LOCK:
                return int(entry.name)
    return None


@contextlib.contextmanager
def services_exclusive():
    """Hold the shared services' lock while a test restarts one, and give it back running.

    Under `flock -x LOCK pytest` the lock is held by a descriptor this process inherited: locking a new one
    would wait for ourselves forever, so the inherited one is made exclusive instead (and stays so).
    """
    inherited = _inherited_lock_fd()
    with contextlib.ExitStack() as stack:
        if inherited is not None:
            fcntl.flock(inherited, fcntl.LOCK_EX)
        else:
            lock = stack.enter_context(open(SERVICES_LOCK, "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        try:
            yield
        finally:
            subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")], capture_output=True, timeout=180)


# --- the faults -----------------------------------------------------------------------------------
def test_pool_process_killed_mid_run_the_job_resumes_and_is_scored_once(phase, fault_services, docker_client):
    workers = fault_services["workers"]
    submission = submit(phase, fault_services["image_id"])
    job = wait_job(submission, lambda j: j.state == Job.State.RUNNING and j.started_at, "the job to start")
    _name, pid = workers.running(job)
    os.kill(pid, signal.SIGKILL)
    assert_scored_exactly_once(submission, docker_client)
    job.refresh_from_db()
    assert job.attempt == 2 and job.exit_reason == ExitReason.OK


def test_whole_worker_killed_its_container_is_reaped_and_the_job_resumes_elsewhere(phase, fault_services, docker_client):
    workers = fault_services["workers"]
    submission = submit(phase, fault_services["image_id"])
    job = wait_job(submission, lambda j: j.state == Job.State.RUNNING and j.started_at, "the job to start")
    wait_until(lambda: job_containers(docker_client), timeout_s=30, what="the job's container")
    name, _pid = workers.running(job)
    other = "inference-b" if name == "inference-a" else "inference-a"
    workers.kill(name)
    try:
        assert_scored_exactly_once(submission, docker_client)
        job.refresh_from_db()
        assert job.attempt == 2
        assert int(job.lease_owner.split(":")[1] if job.lease_owner else 0) not in (_pid,)
        assert "succeeded" in workers.log(other).split("=== start")[-1]
    finally:
        workers.start(name, "inference")


def test_a_job_longer_than_the_visibility_timeout_is_scored_once(phase, fault_services, docker_client):
    # The fault image sleeps 6 s; the broker's visibility timeout is 5 s, so the message may come back.
    submission = submit(phase, fault_services["image_id"])
    assert_scored_exactly_once(submission, docker_client)
    assert Job.objects.get(submission=submission).attempt == 1


def test_a_poison_job_that_kills_its_worker_stops_at_the_attempt_limit_without_charging(phase, fault_services,
                                                                                         docker_client):
    workers = fault_services["workers"]
    submission = submit(phase, fault_services["image_id"], team_name="Dave Lab")
    for attempt in (1, 2, 3):
        job = wait_job(submission, lambda j, a=attempt: j.state == Job.State.RUNNING and j.attempt == a,
                       f"attempt {attempt}")
        _name, pid = workers.running(job)
        os.kill(pid, signal.SIGKILL)
    submission = wait_final(submission)
    job = Job.objects.get(submission=submission)
    assert job.state == Job.State.FAILED and job.exit_reason == ExitReason.PLATFORM_ERROR and job.attempt == 3
    assert submission.state == Submission.State.FAILED and submission.failure_reason.startswith("Platform error")
    assert not CaseResult.objects.filter(submission=submission).exists()
    wait_until(lambda: not job_containers(docker_client), timeout_s=30, what="job containers to be reaped")
    # Each of the three killed attempts left its /output mounted; the surviving workers' reapers unmount them.
    assert_no_attempt_mounts_left()
    # Not charged: the team can still use all its submissions.
    Phase.objects.filter(pk=phase.pk).update(submissions_per_day=1)
    intake.submission_create(team=submission.team, phase=phase, algorithm="again", image=submission.image)


def test_redis_stopped_while_a_submission_is_committed_then_started(phase, fault_services, docker_client):
    redis = fault_services["redis"]
    team = Team.objects.create(slug="carol-lab", name="Carol Lab")
    image = ready_image(team, fault_services["image_id"])
    redis.stop()
    try:
        # The message cannot be sent; the row is committed all the same and the caller gets its submission.
        created = intake.submission_create(team=team, phase=phase, algorithm="faults", image=image)
    finally:
        redis.start()
    submission = Submission.objects.get(team=team)
    assert submission.pk == created.pk and submission.state == Submission.State.VALIDATING
    assert submission.validation_attempts == 0  # no validation ran: the sweep sends it once Redis is back
    assert_scored_exactly_once(submission, docker_client)
    assert Submission.objects.get(pk=submission.pk).validation_attempts >= 1


def test_two_workers_racing_for_the_same_job_run_it_once(phase, fault_services, docker_client):
    from submissions import tasks

    submission = submit(phase, fault_services["image_id"])
    job = wait_job(submission, lambda j: j.state != Job.State.PENDING, "the job to be queued")
    for _ in range(4):  # duplicates of the message: both workers take one
        tasks.run_job.delay(job_id=job.pk)
    assert_scored_exactly_once(submission, docker_client)
    assert Job.objects.get(pk=job.pk).attempt == 1


def test_twenty_parallel_submissions_at_quota_minus_one_accept_exactly_one(phase, fault_services):
    team = Team.objects.create(slug="erin-lab", name="Erin Lab")
    image = ready_image(team, fault_services["image_id"])
    Phase.objects.filter(pk=phase.pk).update(submissions_per_day=3)
    for _ in range(2):
        Submission.objects.create(team=team, phase=phase, algorithm="earlier", image=image,
                                  state=Submission.State.CANCELLED)
    phase.refresh_from_db()
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            intake.submission_create(team=team, phase=phase, algorithm="race", image=image)
            outcomes.append("accepted")
        except intake.SubmissionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * 19
    assert Submission.objects.filter(team=team, algorithm="race").count() == 1
    Submission.objects.filter(team=team, algorithm="race").update(state=Submission.State.CANCELLED)


def test_postgresql_restarted_while_results_are_written(phase, fault_services, docker_client):
    if shutil.which("pg_ctlcluster") is None:
        unavailable("PostgreSQL is not managed by pg_ctlcluster here")
    submission = submit(phase, fault_services["image_id"])
    wait_job(submission, lambda j: j.state == Job.State.RUNNING and j.started_at, "the job to start")
    cluster = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.split()[:2]
    with services_exclusive():
        # The container sleeps 6 s; PostgreSQL goes away as it finishes and the results are written.
        time.sleep(4)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart", "-m", "fast"],
                       check=True, timeout=120)
    connection.close()
    assert_scored_exactly_once(submission, docker_client)


def test_dockerd_restarted_mid_run_the_job_ends_scored_once(phase, fault_services, docker_client):
    submission = submit(phase, fault_services["image_id"])
    wait_job(submission, lambda j: j.state == Job.State.RUNNING and j.started_at, "the job to start")
    wait_until(lambda: job_containers(docker_client), timeout_s=30, what="the job's container")
    with services_exclusive():
        pid = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0])
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: subprocess.run(["pidof", "dockerd"], capture_output=True).returncode != 0,
                   timeout_s=60, what="dockerd to stop")
    # services_exclusive started dockerd again.
    wait_until(lambda: _answers(docker_client.ping), timeout_s=60, what="dockerd")
    # Whether the run survived the restart (runsc's shim outlives dockerd) or was retried, it ends scored once.
    assert_scored_exactly_once(submission, docker_client)
    assert Job.objects.get(submission=submission).attempt <= 3
