"""The submission pipeline's throughput and overhead: `python bench/bench_pipeline.py` (make bench-pipeline).

Many small submissions go through real `celery worker` processes, the real Docker engine and gVisor
(`runsc`), on a throwaway PostgreSQL database (default `touchstone_bench_pipeline`, dropped and created
here, dropped afterwards) and a private Redis on a free port. Each submission is one 20-case job (the
synthetic "test" benchmark, 4 sites x 5 cases). The algorithm reads every case and writes a threshold
label map, then waits `--case-s` per case, standing in for inference on a GPU (the host's CPU stays free,
as it would with a GPU doing the work). It prints its own wall time, measured inside the container from
its first line.

Figures:

* platform overhead per job: a job run in this process through `inference.job_run` (reap, claim, image
  check, input layout, container start under runsc, output collection, hand-off to scoring), minus the time
  the algorithm spent inside its container; as a fraction of the whole 20-case job. Median of
  `--overhead-jobs` runs, with the parts that make it up. Target: under 5 %.
* jobs per minute with 1 and with 2 inference worker processes: `--jobs` submissions sent at once, timed
  until every job has left inference (handed to scoring), and until every submission has completed
  (scored by one scoring worker). Target: 2 workers at least 1.8x one.

Options: --help.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASE = "bench-pipeline-final"
OVERHEAD_TARGET = 0.05
SPEEDUP_TARGET = 1.8
ALGORITHM = '''
import time
STARTED = time.time()
import json, os
import nibabel as nib, numpy as np
case_s = float(os.environ.get("BENCH_CASE_S", "0.5"))
for case in json.load(open("/input/cases.json"))["cases"]:
    began = time.time()
    image = nib.load("/input/" + case["image"])
    labels = (np.asarray(image.dataobj) > 100).astype(np.uint8) * 5
    nib.save(nib.Nifti1Image(labels, image.affine), "/output/%s.nii.gz" % case["case_id"])
    time.sleep(max(0.0, case_s - (time.time() - began)))
print("bench-inside-s %.3f" % (time.time() - STARTED))
'''


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6, help="submissions sent at once in each throughput round")
    parser.add_argument("--overhead-jobs", type=int, default=3, help="jobs run in this process to time the overhead")
    parser.add_argument("--case-s", type=float, default=0.5, help="seconds the algorithm spends on each case")
    parser.add_argument(
        "--database",
        default=os.environ.get("TOUCHSTONE_BENCH_PIPELINE_DATABASE_URL",
                               "postgres://%2Fvar%2Frun%2Fpostgresql/touchstone_bench_pipeline"),
        help="the throwaway database (dropped and created; its server's 'postgres' database must be reachable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and files afterwards")
    return parser.parse_args(argv)


def _database(url: str, *, create: bool) -> None:
    """Drop (and create) the bench database, connecting to its server's maintenance database."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    name = config["NAME"]
    if not name.startswith("touchstone_bench"):
        raise SystemExit(f"refusing to drop {name!r}: the bench database's name must start with touchstone_bench")
    options = {k: v for k, v in {"host": config.get("HOST"), "port": config.get("PORT"),
                                 "user": config.get("USER"), "password": config.get("PASSWORD")}.items() if v}
    with psycopg.connect(dbname="postgres", autocommit=True, **options) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, *, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Services:
    """The private Redis and the worker processes this bench starts (and always stops)."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir, self.env, self.processes = workdir, env, {}

    def redis(self, port: int) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("redis-server is not installed. Run `make setup`.")
        self.processes["redis"] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        _wait(answers, timeout_s=20, what="redis-server")

    def worker(self, name: str, queue: str) -> None:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "w")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "touchstone_site", "worker", "-Q", queue, "-n", f"{name}@%h",
             "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait(lambda: "ready." in log_path.read_text(errors="replace"), timeout_s=90, what=f"worker {name}")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM) if name != "redis" else process.terminate()
            process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in [n for n in self.processes if n != "redis"] + ["redis"]:
            self.stop(name)


def main() -> None:
    args = _parse()
    workdir = Path(tempfile.mkdtemp(prefix="touchstone-bench-pipeline-"))
    data_root = workdir / "data"
    data_root.mkdir()
    data_root.chmod(0o755)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": args.database,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "DATA_ROOT": str(data_root),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "touchstone_site.settings",
        "TOUCHSTONE_DEBUG": os.environ.get("TOUCHSTONE_DEBUG", "true"),
        "TOUCHSTONE_SCORING_PROCESSES": "1",
        "TOUCHSTONE_SANDBOX_CONTAINER_PREFIX": f"touchstone-bench-{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    services = Services(workdir, env)
    image_id = None
    _database(args.database, create=True)
    try:
        services.redis(port)
        import django

        django.setup()
        from django.core.management import call_command

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        call_command("make_synthetic_benchmark", slug="bench-pipeline", size="test", cases_per_site=5, seed=11,
                     shard_size=20, canary_size=20, time_limit_per_case_s=60, memory_mb=1024,
                     submissions_per_day=10_000, show_logs=True, stdout=open(os.devnull, "w"))
        image_id = _build_image(args.case_s)
        print(f"set up in {time.perf_counter() - started:.1f} s: 20-case jobs, {args.case_s:g} s per case inside "
              f"the container, runtime {os.environ.get('TOUCHSTONE_SANDBOX_RUNTIME', 'runsc')}", flush=True)
        services.worker("scoring", "scoring")
        overhead = _overhead(args.overhead_jobs, image_id)
        rounds = {}
        for workers in (1, 2):
            names = [f"inference-{i}" for i in range(workers)]
            for name in names:
                services.worker(name, "inference")
            rounds[workers] = _throughput(args.jobs, image_id, tag=f"w{workers}")
            for name in names:
                services.stop(name)
        _report(overhead, rounds)
    finally:
        services.stop_all()
        if image_id:
            import docker

            try:
                docker.from_env().images.remove(image_id, force=True)
            except Exception:  # noqa: BLE001 - an image left behind is harmless
                pass
        if not args.keep:
            from django.db import connections

            connections.close_all()
            _database(args.database, create=False)
            subprocess.run(["umount", "-l", *map(str, data_root.glob("jobs/*/*/attempt-*/output"))],
                           capture_output=True)
            shutil.rmtree(workdir, ignore_errors=True)


def _build_image(case_s: float) -> str:
    import docker

    context = Path(tempfile.mkdtemp(prefix="bench-image-"))
    (context / "algorithm.py").write_text(ALGORITHM)
    (context / "Dockerfile").write_text(
        f"FROM touchstone/base:latest\nCOPY algorithm.py /opt/algorithm.py\nENV BENCH_CASE_S={case_s}\n"
        'USER 1000\nENTRYPOINT ["python3", "/opt/algorithm.py"]\n'
    )
    image, _ = docker.from_env(timeout=300).images.build(path=str(context), rm=True,
                                                         tag=f"touchstone-bench/pipeline:{os.getpid()}")
    shutil.rmtree(context, ignore_errors=True)
    return image.id


def _submit(image_id: str, tag: str, count: int) -> list[int]:
    """`count` submissions of the bench image, each by its own team, through the real intake."""
    from benchmarks.models import Phase
    from submissions import intake
    from submissions.models import AlgorithmImage
    from teams.models import Team

    phase = Phase.objects.get(slug=PHASE)
    ids = []
    for i in range(count):
        team = Team.objects.create(slug=f"bench-{tag}-{i}", name=f"Bench {tag} {i}")
        image = AlgorithmImage.objects.create(team=team, sha256=image_id.split(":")[-1], size_bytes=1,
                                              tar_path="images/bench.tar", docker_image_id=image_id,
                                              state=AlgorithmImage.State.READY)
        ids.append(intake.submission_create(team=team, phase=phase, algorithm="bench", image=image).pk)
    return ids


def _inside_s(job) -> float:
    match = re.search(r"bench-inside-s ([0-9.]+)", job.log_tail)
    if match is None:
        raise SystemExit(f"job {job.pk} ended {job.exit_reason}: {job.detail}\n{job.log_tail[-2000:]}")
    return float(match.group(1))


def _overhead(count: int, image_id: str) -> dict:
    """Run `count` jobs in this process, timing each step around the container."""
    from django.utils import timezone

    from submissions import inference, intake
    from submissions.models import Job

    parts: dict[str, list[float]] = {"total": [], "inside": [], "before_start": [], "start_and_collect": [],
                                     "hand_off": []}
    for submission_id in _submit(image_id, "overhead", count):
        intake.submission_validate(submission_id=submission_id)
        job = Job.objects.get(submission_id=submission_id)
        began_at, began = timezone.now(), time.perf_counter()
        inference.job_run(job_id=job.pk)
        total = time.perf_counter() - began
        ended_at = timezone.now()
        job.refresh_from_db()
        if job.state != Job.State.SCORING and job.state not in Job.FINAL_STATES:
            raise SystemExit(f"job {job.pk} is {job.state} after its run: {job.detail}")
        inside = _inside_s(job)
        parts["total"].append(total)
        parts["inside"].append(inside)
        parts["before_start"].append(_seconds(job.started_at, began_at))
        parts["start_and_collect"].append(_seconds(job.ran_at, job.started_at) - inside)
        parts["hand_off"].append(_seconds(ended_at, job.ran_at))
    _purge("inference")  # the run_job messages of jobs this process ran itself
    return {name: statistics.median(values) for name, values in parts.items()}


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def _purge(queue: str) -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def _throughput(count: int, image_id: str, *, tag: str) -> dict:
    from submissions.models import Job, Submission

    began = time.perf_counter()
    ids = _submit(image_id, tag, count)

    def all_ran() -> bool:
        return Job.objects.filter(submission_id__in=ids, ran_at__isnull=False).count() == count

    _wait(all_ran, timeout_s=600, what=f"{count} jobs to leave inference", interval_s=0.1)
    ran_s = time.perf_counter() - began
    _wait(lambda: Submission.objects.filter(pk__in=ids, state__in=Submission.FINAL_STATES).count() == count,
          timeout_s=600, what=f"{count} submissions to end", interval_s=0.2)
    completed_s = time.perf_counter() - began
    states = set(Submission.objects.filter(pk__in=ids).values_list("state", flat=True))
    if states != {Submission.State.COMPLETED}:
        raise SystemExit(f"not every submission completed: {states}")
    jobs = list(Job.objects.filter(submission_id__in=ids))
    return {"jobs": count, "ran_s": ran_s, "completed_s": completed_s,
            "inside_s": statistics.median(_inside_s(job) for job in jobs),
            "attempts": max(job.attempt for job in jobs)}


def _report(overhead: dict, rounds: dict) -> None:
    fraction = (overhead["total"] - overhead["inside"]) / overhead["total"]
    print("\n== platform overhead per 20-case job (median) ==")
    print(f"job wall time {overhead['total']:.2f} s, inside the team's container {overhead['inside']:.2f} s")
    print(f"  reap, claim, image check, input layout: {overhead['before_start']:.2f} s")
    print(f"  container start (runsc) and output collection: {overhead['start_and_collect']:.2f} s")
    print(f"  hand-off to scoring (commit, message): {overhead['hand_off']:.3f} s")
    met = "met" if fraction < OVERHEAD_TARGET else "not met"
    print(f"overhead {overhead['total'] - overhead['inside']:.2f} s = {100 * fraction:.1f} % of the job "
          f"(target < {100 * OVERHEAD_TARGET:.0f} %: {met})")
    per_case_s = (overhead["total"] - overhead["inside"]) / (OVERHEAD_TARGET * 20)
    print(f"the overhead is under {100 * OVERHEAD_TARGET:.0f} % of any 20-case job whose container spends at least "
          f"{per_case_s:.2f} s per case (this run: {overhead['inside'] / 20:.2f} s)")
    print("\n== throughput ==")
    for workers, figures in rounds.items():
        print(f"{workers} inference worker(s): {figures['jobs']} jobs left inference in {figures['ran_s']:.1f} s = "
              f"{60 * figures['jobs'] / figures['ran_s']:.2f} jobs/min; all scored and completed in "
              f"{figures['completed_s']:.1f} s = {60 * figures['jobs'] / figures['completed_s']:.2f} jobs/min "
              f"(median {figures['inside_s']:.1f} s inside each container, at most {figures['attempts']} attempt)")
    ratio = rounds[1]["ran_s"] / rounds[2]["ran_s"]
    ratio_completed = rounds[1]["completed_s"] / rounds[2]["completed_s"]
    met = "met" if ratio >= SPEEDUP_TARGET else "not met"
    print(f"2 workers / 1 worker: {ratio:.2f}x through inference, {ratio_completed:.2f}x to completion "
          f"(target >= {SPEEDUP_TARGET}x: {met}; this host has {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
    main()
