"""Recovery: leases kept while a worker works, the sweep that brings every non-final state back, the reaper.

The sweep (a beat task on the `control` queue) is idempotent and safe on several hosts at once: each step
changes a row only by a compare-and-set on the values it read, so two sweeps never act twice on one row.
Containers and attempt /output mounts live on one host, so each inference worker reaps its own (at start,
before each claim and every SWEEP_INTERVAL_S): a container whose job attempt holds no live lease is removed
with its anonymous volumes, and that attempt's capped /output filesystem is unmounted (a worker killed
mid-run never ran its cleanup).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from submissions import progress, retention, sandbox, tasks
from submissions.models import Job, Submission

log = logging.getLogger(__name__)

ACTIVE_JOB_STATES = (Job.State.QUEUED, Job.State.RUNNING, Job.State.SCORING)


# --- database connections after long waits --------------------------------------------------------
def database_ready(*, wait_s: float | None = None) -> None:
    """Drop the connection if it went stale (a long container run, a PostgreSQL restart) and reconnect.

    Retries until PostgreSQL answers or `wait_s` (DATABASE_RECONNECT_WAIT_S) has passed; then raises.
    Never call it inside a transaction.
    """
    deadline = time.monotonic() + (settings.DATABASE_RECONNECT_WAIT_S if wait_s is None else wait_s)
    while True:
        try:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except DatabaseError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            log.warning("database unavailable; retrying")
            time.sleep(1)


# --- leases ---------------------------------------------------------------------------------------
def lease_owner_new() -> str:
    """A name unique to one claim: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_until() -> timezone.datetime:
    return timezone.now() + timedelta(seconds=settings.JOB_LEASE_S)


class LeaseKeeper:
    """Renews a job's lease from a thread while the worker works; calls `on_lost` if the row moved on.

    The row moves on when an organizer cancels or reruns the job, or when the sweep took the lease back
    (the worker could not renew in time): the work of this attempt no longer counts.
    """

    def __init__(self, *, job_id: int, attempt: int, owner: str, state: str, on_lost: Callable[[], None] | None = None):
        self.job_id, self.attempt, self.owner, self.state = job_id, attempt, owner, state
        self.on_lost = on_lost
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        interval_s = max(settings.JOB_LEASE_S / 4, 0.5)
        try:
            while not self._stop.wait(interval_s):
                try:
                    renewed = Job.objects.filter(
                        pk=self.job_id, attempt=self.attempt, state=self.state, lease_owner=self.owner
                    ).update(lease_expires_at=lease_until())
                except DatabaseError:
                    log.warning("job %s: lease not renewed (database unavailable)", self.job_id)
                    connection.close()
                    continue
                if renewed == 0:
                    self.lost = True
                    log.warning("job %s attempt %s: lease lost; stopping", self.job_id, self.attempt)
                    if self.on_lost is not None:
                        self.on_lost()
                    return
        finally:
            connection.close()


# --- containers -----------------------------------------------------------------------------------
def container_name(*, job_id: int, attempt: int) -> str:
    return f"{settings.SANDBOX_CONTAINER_PREFIX}-{job_id}-{attempt}"


def _parse_container_name(name: str) -> tuple[int, int] | None:
    match = re.fullmatch(rf"{re.escape(settings.SANDBOX_CONTAINER_PREFIX)}-(\d+)-(\d+)", name or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def container_stop(*, client, job_id: int, attempt: int) -> None:
    """Remove one attempt's container (and its anonymous volumes) if it is on this engine."""
    import docker.errors

    try:
        client.containers.get(container_name(job_id=job_id, attempt=attempt)).remove(force=True, v=True)
    except docker.errors.NotFound:
        pass


def reaper_start(*, interval_s: float | None = None) -> threading.Thread | None:
    """Reap this host's orphaned containers and /output mounts every SWEEP_INTERVAL_S from a daemon thread.

    One thread per worker process. The sweep runs on the control host and cannot reach each host's engine
    or mounts; this thread does, so what a job that failed or moved elsewhere left here is removed even
    when no new job comes to this worker. Returns None where there is no Docker engine (a scoring-only
    host, which never mounts an /output).
    """
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine on this host: nothing to reap
        return None

    def loop() -> None:
        retention_due = time.monotonic() + settings.RETENTION_HOST_INTERVAL_S
        while True:
            time.sleep(interval_s or settings.SWEEP_INTERVAL_S)
            try:
                containers_reap(client=client)
                if time.monotonic() >= retention_due:
                    retention_due = time.monotonic() + settings.RETENTION_HOST_INTERVAL_S
                    retention.host_cleanup(client=client)
            except Exception:  # noqa: BLE001 - engine or database away: next round
                log.warning("container reaper: this round failed", exc_info=True)
            finally:
                connection.close()

    thread = threading.Thread(target=loop, name="container-reaper", daemon=True)
    thread.start()
    return thread


def containers_reap(*, client) -> list[str]:
    """Remove this engine's job containers whose job holds no live lease for that attempt. Returns their names.

    Then unmounts the /output of every attempt under this host's DATA_ROOT that holds no live lease
    (`output_mounts_reap`), even when the engine is away: a mount must not outlive its attempt.
    """
    try:
        return _containers_remove(client=client)
    finally:
        try:
            output_mounts_reap()
        except Exception:  # noqa: BLE001 - database away: the next round catches up
            log.warning("mount reaper: this round failed", exc_info=True)


def _attempt_live(*, attempt: int, **job) -> bool:
    """Whether this attempt of the job is RUNNING under a lease that has not expired."""
    return Job.objects.filter(
        **job, attempt=attempt, state=Job.State.RUNNING, lease_expires_at__gt=timezone.now()
    ).exists()


def _containers_remove(*, client) -> list[str]:
    import docker.errors

    reaped = []
    for container in client.containers.list(all=True, filters={"label": "touchstone.job"}):
        parsed = _parse_container_name(container.labels.get("touchstone.job", ""))
        if parsed is None:  # another deployment's container, or not a job's
            continue
        job_id, attempt = parsed
        if _attempt_live(pk=job_id, attempt=attempt):
            continue
        try:
            container.remove(force=True, v=True)
            reaped.append(container.name)
            log.warning("reaped container %s: its job holds no live lease", container.name)
        except docker.errors.NotFound:
            pass
    return reaped


# --- attempt /output mounts -----------------------------------------------------------------------
# DATA_ROOT/jobs/<submission id>/<job index>/attempt-<n>/output (inference.job_dir).
_ATTEMPT_OUTPUT = re.compile(r"([0-9]+)/([0-9]+)/attempt-([0-9]+)/output")


def output_mounts_reap(*, data_root: Path | None = None) -> list[Path]:
    """Unmount every attempt's capped /output (ext4) under DATA_ROOT/jobs whose attempt holds no live lease.

    A worker killed mid-run (SIGKILL, OOM kill, its container restarted) never unmounts its attempt's
    /output; the attempt is then over (its lease expires, the job ends or moves to a later attempt), so the
    filesystem is unmounted, its loop device released and its image file and raw folders removed
    (`SandboxRunner.cleanup`; collected predictions are kept). Only ext4 mounts at exactly that place are
    considered; a live attempt's mount (another worker on this host is running it) is kept. Idempotent.
    Returns the mount points unmounted.
    """
    jobs_root = Path(os.path.realpath(data_root or settings.DATA_ROOT)) / "jobs"
    reaped = []
    for mount_point, filesystem in sandbox.mounts_under(jobs_root):
        match = _ATTEMPT_OUTPUT.fullmatch(mount_point.relative_to(jobs_root).as_posix())
        if filesystem != "ext4" or match is None:
            continue
        submission_id, index, attempt = (int(group) for group in match.groups())
        if _attempt_live(submission_id=submission_id, index=index, attempt=attempt):
            continue
        try:
            sandbox.SandboxRunner.cleanup(mount_point.parent)
        except (sandbox.PlatformError, OSError):
            log.warning("could not unmount %s; next round tries again", mount_point, exc_info=True)
            continue
        reaped.append(mount_point)
        log.warning("unmounted %s: its job attempt holds no live lease", mount_point)
    return reaped


# --- the sweep ------------------------------------------------------------------------------------
def sweep() -> dict[str, int]:
    """One pass over every non-final state. Returns how many rows each step moved."""
    database_ready()
    return {
        "leases_expired": leases_expire(),
        "jobs_republished": jobs_republish(),
        "submissions_revalidated": submissions_revalidate(),
        "scoring_retried": scoring_retry(),
        "submissions_advanced": submissions_advance_finished(),
    }


def leases_expire() -> int:
    """RUNNING jobs whose lease expired: their worker was lost. Retried, or failed at the attempt limit."""
    from submissions import inference

    moved = 0
    now = timezone.now()
    for job in Job.objects.filter(state=Job.State.RUNNING).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    ):
        if inference.job_platform_error(
            job=job, error=RuntimeError("the worker running it stopped answering"), expired_before=now
        ):
            moved += 1
    return moved


def jobs_republish() -> int:
    """Re-send QUEUED jobs whose message is gone: waiting long while no worker works, or very long."""
    now = timezone.now()
    idle = not Job.objects.filter(state=Job.State.RUNNING, lease_expires_at__gt=now).exists()
    waiting = Q(queued_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_MAX_WAIT_S)) | Q(queued_at__isnull=True)
    if idle:
        waiting |= Q(queued_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_AFTER_S))
    moved = 0
    for job_id, queued_at in Job.objects.filter(waiting, state=Job.State.QUEUED).values_list("pk", "queued_at"):
        with transaction.atomic():
            if Job.objects.filter(pk=job_id, state=Job.State.QUEUED, queued_at=queued_at).update(queued_at=now):
                transaction.on_commit(lambda job_id=job_id: tasks.run_job.delay(job_id=job_id))
                moved += 1
    return moved


def submissions_revalidate() -> int:
    """Re-send VALIDATING submissions whose message is gone; fail them (platform-side) past the attempt limit."""
    now = timezone.now()
    stale = Submission.objects.annotate(sent_at=Coalesce("validation_sent_at", "created_at")).filter(
        state=Submission.State.VALIDATING, sent_at__lt=now - timedelta(seconds=settings.SWEEP_VALIDATING_AFTER_S)
    )
    moved = 0
    for submission in stale:
        if progress.validation_retry(
            submission_id=submission.pk, sent_at=submission.validation_sent_at,
            error=RuntimeError("its validation did not finish"),
        ):
            moved += 1
    return moved


def scoring_retry() -> int:
    """SCORING jobs past their deadline (scorer lost, message lost): re-sent, or failed at the attempt limit."""
    from submissions import scoring

    moved = 0
    now = timezone.now()
    for job in Job.objects.filter(state=Job.State.SCORING, lease_expires_at__lt=now):
        if scoring.score_platform_error(
            job=job, error=RuntimeError("scoring did not finish in time"), expired_before=now
        ):
            moved += 1
    return moved


def submissions_advance_finished() -> int:
    """Advance QUEUED/RUNNING submissions none of whose jobs is queued, running or scoring."""
    active = Job.objects.filter(submission=OuterRef("pk"), state__in=ACTIVE_JOB_STATES)
    stuck = (
        Submission.objects.filter(state__in=[Submission.State.QUEUED, Submission.State.RUNNING], jobs__isnull=False)
        .annotate(busy=Exists(active))
        .filter(busy=False)
        .distinct()
    )
    return sum(progress.submission_advance(submission_id=pk) for pk in stuck.values_list("pk", flat=True))

