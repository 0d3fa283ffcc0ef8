"""The sweep brings every non-final state back, once, and retention removes only what no live job needs.

Real PostgreSQL; the messages the sweep sends go to a private real Redis and are read back from its queues,
so a test sees which task was sent for which id. Container reaping and `manage.py cleanup` run against the
real Docker engine. Personas: alice's team submits; bob's team runs at the same time.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import docker
import docker.errors
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from submissions import inference, intake, sandbox, sweep
from submissions.models import AlgorithmImage, ExitReason, Job, Submission
from tests.conftest import reset_broker_connections, unavailable, wait_until
from tests.factories import AlgorithmImageFactory, SubmissionFactory, TeamFactory
from tests.submissions.test_faults import Redis

pytestmark = pytest.mark.django_db
AGO = timedelta(seconds=1)


class Broker:
    """A private Redis as the Celery broker; `sent()` reads back every message published to it."""

    def __init__(self, redis: Redis):
        import redis as redis_module

        self.client = redis_module.Redis(port=redis.port)

    def flush(self) -> None:
        self.client.flushdb()

    def sent(self) -> list[tuple[str, dict]]:
        messages = []
        for key in sorted(self.client.keys("*")):
            if self.client.type(key) != b"list":
                continue
            for raw in self.client.lrange(key, 0, -1):
                envelope = json.loads(raw)
                _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
                messages.append((envelope["headers"]["task"], kwargs))
        return sorted(messages, key=lambda message: (message[0], sorted(message[1].items())))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    import shutil

    from django.conf import settings

    from touchstone_site.celery import app

    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed. Run `make setup`.")
    redis = Redis(tmp_path_factory.mktemp("sweep-redis"))
    redis.start()
    saved = (app.conf.broker_url, app.conf.task_always_eager, settings.CELERY_TASK_ALWAYS_EAGER)
    app.conf.broker_url, app.conf.task_always_eager = redis.url, False
    reset_broker_connections(app)
    yield Broker(redis)
    app.conf.broker_url, app.conf.task_always_eager, _ = saved
    reset_broker_connections(app)
    redis.stop()


@pytest.fixture
def messages(broker) -> Broker:
    broker.flush()
    return broker


def run_sweep(capture) -> dict[str, int]:
    """One sweep, its messages sent after commit as in production (captured here, then executed)."""
    with capture(execute=True):
        moved = sweep.sweep()
    return moved


def submission_with_jobs(phase, *, team=None) -> tuple[Submission, list[Job]]:
    """A validated submission: a canary of 3 cases and two shards of 4 (the `sharded_phase`)."""
    submission = SubmissionFactory(phase=phase, **({"team": team} if team else {}))
    jobs = intake.jobs_create(submission=submission)
    return submission, jobs


def set_job(job: Job, **values) -> Job:
    Job.objects.filter(pk=job.pk).update(**values)
    job.refresh_from_db()
    return job


def running(job: Job, *, attempt: int = 1, lease_s: float = -1, **values) -> Job:
    """The job RUNNING on attempt `attempt`, its lease ending `lease_s` from now (negative: expired)."""
    Submission.objects.filter(pk=job.submission_id).update(state=Submission.State.RUNNING)
    return set_job(job, state=Job.State.RUNNING, attempt=attempt, lease_owner="host:1:abc",
                   lease_expires_at=timezone.now() + timedelta(seconds=lease_s), started_at=timezone.now(), **values)


def nothing_moved(moved: dict[str, int]) -> bool:
    return not any(moved.values())


# --- expired leases ---------------------------------------------------------------------------------
def test_an_expired_lease_is_taken_back_and_the_job_sent_again_on_a_new_attempt(
    sharded_phase, messages, django_capture_on_commit_callbacks
):
    submission, jobs = submission_with_jobs(sharded_phase)
    canary = running(jobs[0], attempt=1, lease_s=-5)

    moved = run_sweep(django_capture_on_commit_callbacks)

    assert moved["leases_expired"] == 1
    canary.refresh_from_db()
    assert canary.state == Job.State.QUEUED and canary.exit_reason == ExitReason.PLATFORM_ERROR
    assert canary.lease_owner == "" and canary.lease_expires_at is None and canary.attempt == 1
    assert "stopped answering" in canary.platform_detail and "never charged" in canary.detail
    assert messages.sent() == [("touchstone.run_job", {"job_id": canary.pk})]
    assert Submission.objects.get(pk=submission.pk).state == Submission.State.RUNNING


def test_a_live_lease_is_left_to_its_worker(sharded_phase, messages, django_capture_on_commit_callbacks):
    _submission, jobs = submission_with_jobs(sharded_phase)
    canary = running(jobs[0], lease_s=60)

    assert nothing_moved(run_sweep(django_capture_on_commit_callbacks))

    assert Job.objects.get(pk=canary.pk).state == Job.State.RUNNING
    assert messages.sent() == []


def test_an_expired_lease_at_the_attempt_limit_fails_platform_side_and_is_not_charged(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.JOB_MAX_ATTEMPTS = 3
    submission, jobs = submission_with_jobs(sharded_phase)
    canary = running(jobs[0], attempt=3, lease_s=-5)

    assert run_sweep(django_capture_on_commit_callbacks)["leases_expired"] == 1

    canary.refresh_from_db()
    submission.refresh_from_db()
    assert canary.state == Job.State.FAILED and canary.exit_reason == ExitReason.PLATFORM_ERROR
    assert submission.state == Submission.State.FAILED
    assert submission.failure_reason.startswith("Platform error") and "does not count" in submission.failure_reason
    assert set(Job.objects.filter(submission=submission).exclude(pk=canary.pk).values_list("state", flat=True)) == {
        Job.State.CANCELLED
    }
    assert messages.sent() == []
    # Not charged: with a quota of one submission a day, alice can still submit.
    type(sharded_phase).objects.filter(pk=sharded_phase.pk).update(submissions_per_day=1)
    sharded_phase.refresh_from_db()
    intake.submission_create(team=submission.team, phase=sharded_phase, algorithm="again", image=submission.image)


def test_the_attempt_limit_counts_only_attempts_since_an_organizers_rerun(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.JOB_MAX_ATTEMPTS = 3
    _submission, jobs = submission_with_jobs(sharded_phase)
    canary = running(jobs[0], attempt=4, attempt_offset=3, lease_s=-5)

    run_sweep(django_capture_on_commit_callbacks)

    assert Job.objects.get(pk=canary.pk).state == Job.State.QUEUED
    assert messages.sent() == [("touchstone.run_job", {"job_id": canary.pk})]


# --- QUEUED jobs whose message is gone ---------------------------------------------------------------
def test_a_queued_job_whose_message_is_lost_is_sent_again_once_and_a_fresh_one_is_not(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.SWEEP_QUEUED_AFTER_S = 600
    _submission, jobs = submission_with_jobs(sharded_phase)
    lost = set_job(jobs[0], queued_at=timezone.now() - timedelta(seconds=601))
    _other, fresh_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    fresh = set_job(fresh_jobs[0], queued_at=timezone.now() - timedelta(seconds=30))

    assert run_sweep(django_capture_on_commit_callbacks)["jobs_republished"] == 1

    assert messages.sent() == [("touchstone.run_job", {"job_id": lost.pk})]
    assert Job.objects.get(pk=lost.pk).queued_at > lost.queued_at
    assert Job.objects.get(pk=fresh.pk).queued_at == fresh.queued_at
    # The next sweep finds the job freshly sent: nothing again.
    messages.flush()
    assert run_sweep(django_capture_on_commit_callbacks)["jobs_republished"] == 0
    assert messages.sent() == []


def test_while_workers_are_busy_a_queued_job_is_sent_again_only_past_the_longest_wait(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.SWEEP_QUEUED_AFTER_S, settings.SWEEP_QUEUED_MAX_WAIT_S = 600, 6 * 3600
    _busy, busy_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    running(busy_jobs[0], lease_s=60)  # a worker is busy: a queued message is probably just waiting its turn
    _submission, jobs = submission_with_jobs(sharded_phase)
    waiting = set_job(jobs[0], queued_at=timezone.now() - timedelta(seconds=601))

    assert run_sweep(django_capture_on_commit_callbacks)["jobs_republished"] == 0
    assert messages.sent() == []

    set_job(waiting, queued_at=timezone.now() - timedelta(seconds=6 * 3600 + 1))
    assert run_sweep(django_capture_on_commit_callbacks)["jobs_republished"] == 1
    assert messages.sent() == [("touchstone.run_job", {"job_id": waiting.pk})]


# --- VALIDATING submissions ---------------------------------------------------------------------------
def test_a_validating_submission_whose_message_is_lost_is_sent_again(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.SWEEP_VALIDATING_AFTER_S = 35 * 60
    stale = SubmissionFactory(phase=sharded_phase)
    Submission.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=36))
    fresh = SubmissionFactory(phase=sharded_phase, team=TeamFactory(slug="bob-lab"))

    assert run_sweep(django_capture_on_commit_callbacks)["submissions_revalidated"] == 1

    stale.refresh_from_db()
    assert stale.state == Submission.State.VALIDATING and stale.validation_attempts == 1
    assert timezone.now() - stale.validation_sent_at < timedelta(seconds=30)
    assert messages.sent() == [("touchstone.validate_submission", {"submission_id": stale.pk})]
    assert Submission.objects.get(pk=fresh.pk).validation_attempts == 0


def test_a_validating_submission_at_the_attempt_limit_fails_platform_side_and_is_not_charged(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.JOB_MAX_ATTEMPTS, settings.SWEEP_VALIDATING_AFTER_S = 3, 35 * 60
    stale = SubmissionFactory(phase=sharded_phase)
    Submission.objects.filter(pk=stale.pk).update(
        validation_attempts=2, validation_sent_at=timezone.now() - timedelta(minutes=36)
    )

    assert run_sweep(django_capture_on_commit_callbacks)["submissions_revalidated"] == 1

    stale.refresh_from_db()
    assert stale.state == Submission.State.FAILED and stale.failure_reason.startswith("Platform error")
    assert messages.sent() == []
    type(sharded_phase).objects.filter(pk=sharded_phase.pk).update(submissions_per_day=1)
    sharded_phase.refresh_from_db()
    intake.submission_create(team=stale.team, phase=sharded_phase, algorithm="again", image=stale.image)


# --- SCORING jobs ---------------------------------------------------------------------------------------
def scoring(job: Job, *, score_attempt: int, deadline_s: float) -> Job:
    Submission.objects.filter(pk=job.submission_id).update(state=Submission.State.RUNNING)
    return set_job(job, state=Job.State.SCORING, attempt=1, exit_reason=ExitReason.OK, score_attempt=score_attempt,
                   lease_owner="", lease_expires_at=timezone.now() + timedelta(seconds=deadline_s))


def test_a_job_scoring_past_its_deadline_is_sent_to_scoring_again(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.SCORING_DEADLINE_S = 2 * 3600
    _submission, jobs = submission_with_jobs(sharded_phase)
    late = scoring(jobs[0], score_attempt=1, deadline_s=-1)
    _other, other_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    in_time = scoring(other_jobs[0], score_attempt=1, deadline_s=600)

    assert run_sweep(django_capture_on_commit_callbacks)["scoring_retried"] == 1

    late.refresh_from_db()
    assert late.state == Job.State.SCORING and late.lease_owner == ""
    assert late.lease_expires_at > timezone.now() + timedelta(seconds=2 * 3600 - 60)
    assert messages.sent() == [("touchstone.score_job", {"job_id": late.pk})]
    assert Job.objects.get(pk=in_time.pk).lease_expires_at == in_time.lease_expires_at


def test_a_job_scoring_past_its_deadline_at_the_attempt_limit_fails_platform_side(
    sharded_phase, messages, django_capture_on_commit_callbacks, settings
):
    settings.JOB_MAX_ATTEMPTS = 3
    submission, jobs = submission_with_jobs(sharded_phase)
    late = scoring(jobs[0], score_attempt=3, deadline_s=-1)

    assert run_sweep(django_capture_on_commit_callbacks)["scoring_retried"] == 1

    late.refresh_from_db()
    submission.refresh_from_db()
    assert late.state == Job.State.FAILED and late.exit_reason == ExitReason.PLATFORM_ERROR
    assert submission.state == Submission.State.FAILED and submission.failure_reason.startswith("Platform error")
    assert messages.sent() == []


# --- submissions whose jobs have all ended ---------------------------------------------------------------
def test_a_submission_whose_jobs_all_ended_is_completed_and_its_leaderboard_recomputed(
    sharded_phase, messages, django_capture_on_commit_callbacks
):
    submission, jobs = submission_with_jobs(sharded_phase)
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.RUNNING)
    Job.objects.filter(submission=submission).update(state=Job.State.SUCCEEDED, exit_reason=ExitReason.OK,
                                                      finished_at=timezone.now())

    assert run_sweep(django_capture_on_commit_callbacks)["submissions_advanced"] == 1

    submission.refresh_from_db()
    assert submission.state == Submission.State.COMPLETED and submission.completed_at is not None
    assert messages.sent() == [("touchstone.compute_leaderboard", {"phase_id": sharded_phase.pk})]
    messages.flush()
    assert run_sweep(django_capture_on_commit_callbacks)["submissions_advanced"] == 0
    assert messages.sent() == []


def test_a_passed_canary_whose_fan_out_was_lost_is_fanned_out(
    sharded_phase, messages, django_capture_on_commit_callbacks
):
    submission, jobs = submission_with_jobs(sharded_phase)
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.RUNNING)
    set_job(jobs[0], state=Job.State.SUCCEEDED, exit_reason=ExitReason.OK, finished_at=timezone.now())

    assert run_sweep(django_capture_on_commit_callbacks)["submissions_advanced"] == 1

    assert messages.sent() == [("touchstone.run_job", {"job_id": job.pk}) for job in jobs[1:]]
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs[1:]]).values_list("state", flat=True)) == {
        Job.State.QUEUED
    }


# --- two sweeps at once -------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_sweeps_on_several_hosts_at_once_act_once_on_each_row(sharded_phase, messages, settings):
    settings.JOB_MAX_ATTEMPTS, settings.SWEEP_QUEUED_AFTER_S, settings.SWEEP_VALIDATING_AFTER_S = 3, 600, 35 * 60
    expired_submission, expired_jobs = submission_with_jobs(sharded_phase)
    expired = running(expired_jobs[0], lease_s=-5)
    _lost_submission, lost_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    lost = set_job(lost_jobs[0], queued_at=timezone.now() - timedelta(seconds=601))
    _late_submission, late_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="carol-lab"))
    late = scoring(late_jobs[0], score_attempt=1, deadline_s=-1)
    done, done_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="dave-lab"))
    Submission.objects.filter(pk=done.pk).update(state=Submission.State.RUNNING)
    Job.objects.filter(submission=done).update(state=Job.State.SUCCEEDED, exit_reason=ExitReason.OK)
    validating = SubmissionFactory(phase=sharded_phase, team=TeamFactory(slug="erin-lab"))
    Submission.objects.filter(pk=validating.pk).update(created_at=timezone.now() - timedelta(minutes=36))
    messages.flush()  # jobs_create sent its canaries on commit

    hosts = 4
    barrier, results, errors = threading.Barrier(hosts), [], []

    def one_host() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(sweep.sweep())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_host) for _ in range(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    totals = {key: sum(result[key] for result in results) for key in results[0]}
    assert totals == {"leases_expired": 1, "jobs_republished": 1, "submissions_revalidated": 1,
                      "scoring_retried": 1, "submissions_advanced": 1}
    assert messages.sent() == sorted([
        ("touchstone.compute_leaderboard", {"phase_id": sharded_phase.pk}),
        ("touchstone.run_job", {"job_id": expired.pk}),
        ("touchstone.run_job", {"job_id": lost.pk}),
        ("touchstone.score_job", {"job_id": late.pk}),
        ("touchstone.validate_submission", {"submission_id": validating.pk}),
    ], key=lambda message: (message[0], sorted(message[1].items())))
    assert Job.objects.get(pk=expired.pk).state == Job.State.QUEUED
    assert Submission.objects.get(pk=done.pk).state == Submission.State.COMPLETED
    assert Submission.objects.get(pk=validating.pk).validation_attempts == 1
    assert Submission.objects.get(pk=expired_submission.pk).state == Submission.State.RUNNING


# --- containers ------------------------------------------------------------------------------------------------
def test_containers_no_live_lease_owns_are_reaped_with_their_volumes_and_live_ones_kept(
    sharded_phase, docker_client, settings, tmp_path
):
    prefix = settings.SANDBOX_CONTAINER_PREFIX = f"touchstone-sweep-{os.getpid()}"
    settings.DATA_ROOT = tmp_path  # the reaper also looks at DATA_ROOT's mounts: never another session's
    _submission, jobs = submission_with_jobs(sharded_phase)
    live = running(jobs[0], attempt=2, lease_s=60)
    expired = running(jobs[1], attempt=1, lease_s=-5)
    ended = set_job(jobs[2], state=Job.State.SUCCEEDED, attempt=1)
    wanted = {
        f"{prefix}-{live.pk}-2": True,  # the live attempt
        f"{prefix}-{live.pk}-1": False,  # its earlier attempt
        f"{prefix}-{expired.pk}-1": False,  # its worker was lost
        f"{prefix}-{ended.pk}-1": False,  # its job has ended
        f"another-deployment-{ended.pk}-1": True,  # not this deployment's: never touched
    }
    volumes = {}
    try:
        for name in wanted:
            created = docker_client.api.create_container(
                "touchstone/base:latest", ["sleep", "300"], name=name, labels={"touchstone.job": name},
                volumes=["/scratch"], host_config=docker_client.api.create_host_config(),
            )
            docker_client.api.start(created["Id"])
            mounts = docker_client.api.inspect_container(created["Id"])["Mounts"]
            volumes[name] = next(mount["Name"] for mount in mounts if mount["Destination"] == "/scratch")

        reaped = sweep.containers_reap(client=docker_client)

        assert sorted(reaped) == sorted(name for name, kept in wanted.items() if not kept)
        for name, kept in wanted.items():
            assert _exists(docker_client.containers.get, name) == kept, name
            assert _exists(docker_client.volumes.get, volumes[name]) == kept, f"volume of {name}"
    finally:
        for name in wanted:
            try:
                docker_client.api.remove_container(name, force=True, v=True)
            except docker.errors.NotFound:
                pass


def _exists(get, name: str) -> bool:
    try:
        get(name)
        return True
    except docker.errors.NotFound:
        return False


# --- attempt /output mounts ------------------------------------------------------------------------------
@pytest.fixture
def mounts(tmp_path):
    """Mounts a capped /output as a worker does (`_mount_capped_output`); unmounts whatever a test left."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        unavailable("capped /output mounts need root and e2fsprogs (mkfs.ext4)")

    def mount(folder: Path) -> Path:
        (folder / "output").mkdir(parents=True)
        (folder / "predictions").mkdir()
        (folder / "predictions" / "c00.nii.gz").write_bytes(b"collected")
        sandbox._mount_capped_output(folder / sandbox.OUTPUT_IMAGE, folder / "output", max_bytes=4 * 2**20,
                                     max_files=10, uid=1000, gid=1000)
        (folder / "output" / "c00.nii.gz").write_bytes(b"raw")
        assert os.path.ismount(folder / "output")
        return folder / "output"

    yield mount
    for mount_point, _filesystem in sandbox.mounts_under(tmp_path):
        sandbox.unmount(mount_point)


def _loop_device(mount_point: Path) -> str:
    """The loop device mounted on `mount_point` (`loop3`), from /proc/self/mounts."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target = line.split()[:2]
        if target == str(mount_point) and source.startswith("/dev/loop"):
            return source.removeprefix("/dev/")
    raise AssertionError(f"no loop device is mounted on {mount_point}")


def _backs(device: str, image: Path) -> bool:
    """Whether the loop device is still attached to `image` (the kernel may reuse a detached one for another)."""
    try:
        backing = Path(f"/sys/block/{device}/loop/backing_file").read_text().strip()
    except FileNotFoundError:  # detached
        return False
    return backing.removesuffix(" (deleted)") == str(image)


def test_an_attempts_output_no_live_lease_owns_is_unmounted_by_the_reaper_and_a_live_one_kept(
    sharded_phase, docker_client, mounts, settings, tmp_path
):
    settings.DATA_ROOT = tmp_path / "data"
    settings.SANDBOX_CONTAINER_PREFIX = f"touchstone-sweep-{os.getpid()}"
    _submission, jobs = submission_with_jobs(sharded_phase)
    live = running(jobs[0], attempt=2, lease_s=60)  # another worker on this host is running it
    expired = running(jobs[1], attempt=1, lease_s=-5)  # its worker was SIGKILLed
    ended = set_job(jobs[2], state=Job.State.FAILED, attempt=1)
    wanted = {  # mount point: kept
        mounts(inference.job_dir(live, 2)): True,
        mounts(inference.job_dir(live, 1)): False,  # an earlier attempt of a live job
        mounts(inference.job_dir(expired, 1)): False,
        mounts(inference.job_dir(ended, 1)): False,
        # Not an attempt's /output: never touched, whatever its job's state.
        mounts(inference.job_dir(ended, 1).with_name("attempt-1-copy")): True,
        mounts(tmp_path / "elsewhere" / f"{ended.submission_id}" / f"{ended.index}" / "attempt-1"): True,
    }
    devices = {mount_point: _loop_device(mount_point) for mount_point in wanted}

    # The entry point every worker calls (at start, before each claim, from its reaper thread).
    reaped = sweep.containers_reap(client=docker_client)

    assert reaped == []  # no container of this test
    unmounted = [mount_point for mount_point, kept in wanted.items() if not kept]
    for mount_point, kept in wanted.items():
        assert os.path.ismount(mount_point) == kept, mount_point
        image, device = mount_point.parent / sandbox.OUTPUT_IMAGE, devices[mount_point]
        assert image.exists() == kept, f"the /output image of {mount_point}"
        if kept:
            assert _backs(device, image), f"{device} of {mount_point}"
        else:
            wait_until(lambda d=device, i=image: not _backs(d, i), timeout_s=10, what=f"{device} to be detached")
            # The raw folders go with the mount; what was collected stays for scoring and retention.
            assert not mount_point.exists() and (mount_point.parent / "predictions" / "c00.nii.gz").exists()
    mounted = {mount_point for mount_point, _filesystem in sandbox.mounts_under(tmp_path)}
    assert not mounted & set(unmounted) and mounted == {m for m, kept in wanted.items() if kept}
    # Idempotent: a second round (another worker's reaper on this host) finds nothing more.
    assert sweep.output_mounts_reap() == []
    assert all(os.path.ismount(mount_point) == kept for mount_point, kept in wanted.items())


def test_cleanup_unmounts_an_ended_jobs_outputs_before_removing_their_folders(
    sharded_phase, docker_client, mounts, settings, tmp_path
):
    settings.DATA_ROOT = tmp_path
    settings.RETENTION_RAW_OUTPUT_HOURS, settings.RETENTION_PREDICTIONS_DAYS = 1, 30
    _submission, jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    ended = set_job(jobs[0], state=Job.State.SUCCEEDED, attempt=2, finished_at=timezone.now() - timedelta(hours=2))
    earlier, current = mounts(inference.job_dir(ended, 1)), mounts(inference.job_dir(ended, 2))
    devices = {_loop_device(earlier): earlier, _loop_device(current): current}

    call_command("cleanup", stdout=io.StringIO())

    assert not sandbox.mounts_under(tmp_path)
    assert not inference.job_dir(ended, 1).exists()
    assert not current.exists() and (current.parent / "predictions" / "c00.nii.gz").read_bytes() == b"collected"
    for device, mount_point in devices.items():
        image = mount_point.parent / sandbox.OUTPUT_IMAGE
        assert not image.exists()
        wait_until(lambda d=device, i=image: not _backs(d, i), timeout_s=10, what=f"{device} to be detached")


# --- retention: `manage.py cleanup` -------------------------------------------------------------------------------
@pytest.fixture
def test_images(docker_client):
    """Five tiny images of their own (a label on the base image), removed afterwards if cleanup kept them."""
    made = []

    def make(name: str) -> str:
        dockerfile = f"FROM touchstone/base:latest\nLABEL touchstone.test={name}-{os.getpid()}-{time.time_ns()}\n"
        image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                              tag=f"touchstone-test/retention-{name}:{os.getpid()}")
        made.append(image.id)
        return image.id

    yield make
    for image_id in made:
        try:
            docker_client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass


def _age(path: Path, hours: float) -> Path:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))
    return path


def _job_folders(job: Job, attempts: list[int]) -> dict[str, Path]:
    folders = {}
    for attempt in attempts:
        for part in ("input", "output", "predictions"):
            folder = inference.job_dir(job, attempt) / part
            folder.mkdir(parents=True)
            (folder / "c00.nii.gz").write_bytes(b"x")
            folders[f"{attempt}/{part}"] = folder
    return folders


def test_cleanup_removes_what_retention_allows_and_never_what_a_live_job_needs(
    sharded_phase, docker_client, test_images, settings, tmp_path
):
    settings.DATA_ROOT = tmp_path
    settings.RETENTION_IMAGE_DAYS, settings.RETENTION_UPLOAD_HOURS = 7, 24
    settings.RETENTION_RAW_OUTPUT_HOURS, settings.RETENTION_PREDICTIONS_DAYS = 1, 30
    now = timezone.now()
    alice = TeamFactory(slug="alice-lab")

    # Docker images: which submissions use them, and when those ended.
    def image_used_by(name: str, *states_ended: tuple[str, timedelta | None]) -> AlgorithmImage:
        image = AlgorithmImageFactory(team=alice, docker_image_id=test_images(name), state=AlgorithmImage.State.READY)
        AlgorithmImage.objects.filter(pk=image.pk).update(created_at=now - timedelta(days=30))
        for state, ended_ago in states_ended:
            submission = SubmissionFactory(team=alice, phase=sharded_phase, image=image, state=state)
            ended_at = now - ended_ago if ended_ago is not None else None
            Submission.objects.filter(pk=submission.pk).update(
                completed_at=ended_at, created_at=(ended_at or now) - timedelta(hours=1)
            )
        return image

    failed_long_ago = image_used_by("failed", (Submission.State.FAILED, timedelta(days=8)))
    superseded = image_used_by("superseded", (Submission.State.COMPLETED, timedelta(days=10)))
    current = image_used_by("current", (Submission.State.COMPLETED, timedelta(days=9)))
    failed_recently = image_used_by("recent", (Submission.State.FAILED, timedelta(days=1)))
    live = image_used_by("live", (Submission.State.FAILED, timedelta(days=8)), (Submission.State.RUNNING, None))

    # Uploads.
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    refused = AlgorithmImageFactory(team=alice, state=AlgorithmImage.State.INVALID, error="two images")
    uploads = {  # what: (file, hours old, kept)
        "stale part": ("upload-1.part", 25, False),
        "part being written": ("upload-2.part", 0, True),
        "refused tar": (Path(refused.tar_path).name, 25, False),
        "unknown tar": ("feedbeef.tar", 25, False),
        "fresh unknown tar": ("cafebabe.tar", 0, True),
        "ready image's tar (a rerun reloads it)": (Path(current.tar_path).name, 25, True),
        "a case's CT": ("c00.nii.gz", 25, True),
    }
    for name, hours, _kept in uploads.values():
        (images_dir / name).write_bytes(b"x")
        _age(images_dir / name, hours)

    # Job folders.
    _submission, jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="bob-lab"))
    ended_2h = set_job(jobs[0], state=Job.State.SUCCEEDED, attempt=2, finished_at=now - timedelta(hours=2))
    ended_31d = set_job(jobs[1], state=Job.State.SUCCEEDED, attempt=1, finished_at=now - timedelta(days=31))
    ended_10m = set_job(jobs[2], state=Job.State.FAILED, attempt=1, finished_at=now - timedelta(minutes=10))
    _live_submission, live_jobs = submission_with_jobs(sharded_phase, team=TeamFactory(slug="carol-lab"))
    live_running = running(live_jobs[0], attempt=2, lease_s=60)
    live_scoring = scoring(live_jobs[1], score_attempt=1, deadline_s=600)
    folders = {
        "ended 2 h: earlier attempt": (_job_folders(ended_2h, [1, 2]), {"1/input": False, "1/output": False,
                                       "1/predictions": False, "2/input": False, "2/output": False,
                                       "2/predictions": True}),
        "ended 31 days": (_job_folders(ended_31d, [1]), {"1/input": False, "1/output": False, "1/predictions": False}),
        "ended 10 min": (_job_folders(ended_10m, [1]), {"1/input": True, "1/output": True, "1/predictions": True}),
        "running": (_job_folders(live_running, [1, 2]), dict.fromkeys(
            ["1/input", "1/output", "1/predictions", "2/input", "2/output", "2/predictions"], True)),
        "scoring": (_job_folders(live_scoring, [1]), dict.fromkeys(["1/input", "1/output", "1/predictions"], True)),
    }

    out = io.StringIO()
    call_command("cleanup", stdout=out)

    assert "docker images: 2 removed" in out.getvalue(), out.getvalue()
    for image, kept in ((failed_long_ago, False), (superseded, False), (current, True), (failed_recently, True),
                        (live, True)):
        assert _exists(docker_client.images.get, image.docker_image_id) == kept, image
    for what, (name, _hours, kept) in uploads.items():
        assert (images_dir / name).exists() == kept, what
    for what, (made, expected) in folders.items():
        for part, kept in expected.items():
            assert made[part].exists() == kept, f"{what}: {part}"
    # A second run finds nothing more to remove.
    again = io.StringIO()
    call_command("cleanup", stdout=again)
    assert all(line.endswith(": 0 removed") for line in again.getvalue().splitlines()), again.getvalue()


def test_the_control_workers_cleanup_keeps_to_uploads_and_a_host_without_an_engine_removes_no_image(
    sharded_phase, settings, tmp_path
):
    """The beat's daily cleanup runs on the control worker, which has no Docker engine and is not root: it
    removes stale uploads only (and an unfinished chunked upload's row with its file); an inference host's
    own cleanup tolerates a missing engine instead of stopping before the job folders."""
    from api.models import Upload
    from api.services import part_path

    settings.DATA_ROOT, settings.RETENTION_UPLOAD_HOURS = tmp_path, 24
    alice = TeamFactory(slug="alice-lab")
    stale = Upload.objects.create(team=alice, phase=sharded_phase, algorithm="unet", size_bytes=10, received_bytes=4)
    fresh = Upload.objects.create(team=alice, phase=sharded_phase, algorithm="unet", size_bytes=10, received_bytes=4)
    for upload in (stale, fresh):
        part_path(upload).parent.mkdir(parents=True, exist_ok=True)
        part_path(upload).write_bytes(b"1234")
    Upload.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(hours=25))

    from submissions import retention, tasks

    assert tasks.cleanup.run() == {"upload_files": 0, "unfinished_uploads": 1}
    assert not Upload.objects.filter(pk=stale.pk).exists() and not part_path(stale).exists()
    assert Upload.objects.filter(pk=fresh.pk).exists() and part_path(fresh).exists()

    nowhere = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    assert retention.host_cleanup(client=nowhere) == {"docker_images": 0, "job_folders": 0}
