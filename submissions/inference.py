"""Inference: a job claimed by compare-and-set under a lease, its container run in the sandbox, its outputs collected.

Each attempt works in its own folder (DATA_ROOT/jobs/<submission>/<job index>/attempt-<n>), so a retried
attempt and a slow earlier one never touch each other's files. Any exception ends as a platform error with
a retry, never as a job left RUNNING.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from benchmarks.models import Phase
from submissions import image_check, progress, sandbox, sweep, tasks
from submissions.models import ExitReason, Job, Submission

log = logging.getLogger(__name__)


def job_claim(*, job_id: int, owner: str = "") -> bool:
    """Compare-and-set QUEUED → RUNNING under a fresh lease. Exactly one worker wins; a redelivered message loses."""
    claimed = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, attempt=F("attempt") + 1, started_at=None, ran_at=None,
        worker=socket.gethostname(), lease_owner=owner or sweep.lease_owner_new(), lease_expires_at=sweep.lease_until(),
    )
    if claimed == 1:
        Submission.objects.filter(jobs__pk=job_id, state=Submission.State.QUEUED).update(
            state=Submission.State.RUNNING
        )
    return claimed == 1


def job_limits(phase: Phase, n_cases: int) -> sandbox.SandboxLimits:
    return sandbox.SandboxLimits(
        time_limit_s=phase.time_limit_overhead_s + phase.time_limit_per_case_s * n_cases,
        memory_mb=phase.memory_mb,
        cpus=phase.cpus,
        gpu=phase.gpu,
        nproc=settings.SANDBOX_NPROC,
        pids_limit=settings.SANDBOX_PIDS_LIMIT,
        tmpfs_mb=settings.SANDBOX_TMPFS_MB,
        volume_tmpfs_mb=settings.SANDBOX_VOLUME_TMPFS_MB,
        shm_mb=settings.SANDBOX_SHM_MB,
        output_max_bytes=settings.SANDBOX_OUTPUT_MAX_BYTES,
        output_max_files=settings.SANDBOX_OUTPUT_MAX_FILES,
        log_max_bytes=settings.SANDBOX_LOG_MAX_BYTES,
        user=settings.SANDBOX_USER,
        # gVisor here has no GPU proxy: a GPU phase runs under its own runtime, every other hardening kept.
        runtime=settings.SANDBOX_GPU_RUNTIME if phase.gpu else settings.SANDBOX_RUNTIME,
        gpu_driver=settings.SANDBOX_GPU_DRIVER,
    )


# Beyond the container's own limit, a job's message may take this long: image load, inputs, collection.
JOB_OVERHEAD_ALLOWANCE_S = 30 * 60


def job_message_time_limit_s(*, job_id: int) -> int:
    """Celery's hard limit for one run_job message: the phase's limit for this shard, plus the overhead allowance.

    The sandbox stops the container at the phase's limit; this is the backstop for a worker stuck elsewhere.
    """
    job = Job.objects.select_related("submission__phase").get(pk=job_id)
    return int(job_limits(job.submission.phase, job.cases.count()).time_limit_s) + JOB_OVERHEAD_ALLOWANCE_S


def job_jobs_dir(job: Job) -> Path:
    """The folder of all attempts of a job."""
    return Path(settings.DATA_ROOT) / "jobs" / f"{job.submission_id}" / f"{job.index}"


def job_dir(job: Job, attempt: int | None = None) -> Path:
    """The folder of one attempt (the job's current one by default): input/, output/, predictions/."""
    return job_jobs_dir(job) / f"attempt-{job.attempt if attempt is None else attempt}"


def job_run(*, job_id: int, runner_override: sandbox.SandboxRunner | None = None) -> None:
    """Claim a job under a lease, run it (the lease renewed meanwhile), and turn any exception into a platform error.

    Before claiming, the worker reaps its engine's containers that no live lease owns (a worker killed
    mid-run leaves its container behind; the job itself comes back through the sweep).
    """
    sweep.database_ready()
    runner = runner_override or sandbox.SandboxRunner(log_tail_bytes=settings.SANDBOX_LOG_TAIL_BYTES)
    try:
        sweep.containers_reap(client=runner.client)
    except Exception:  # noqa: BLE001 - an engine error here must not stop the claim; the run reports it
        log.exception("could not reap containers before claiming job %s", job_id)
    owner = sweep.lease_owner_new()
    if not job_claim(job_id=job_id, owner=owner):
        return
    job = Job.objects.get(pk=job_id)

    def stop_container() -> None:
        try:
            sweep.container_stop(client=runner.client, job_id=job.pk, attempt=job.attempt)
        except Exception:  # noqa: BLE001 - the reaper removes it later
            log.exception("job %s: could not stop the container of a lost lease", job_id)

    with sweep.LeaseKeeper(job_id=job.pk, attempt=job.attempt, owner=owner, state=Job.State.RUNNING,
                           on_lost=stop_container):
        try:
            _job_execute(job_id=job_id, runner=runner)
        except Exception as error:  # noqa: BLE001 - the one catch-all: never leave a job RUNNING
            log.exception("job %s attempt %s: platform error", job_id, job.attempt)
            sweep.database_ready()
            job_platform_error(job=job, error=error)


def _job_execute(*, job_id: int, runner: sandbox.SandboxRunner) -> None:
    """Run a claimed job's container and collect its outputs; then hand it to the scoring queue."""
    job = Job.objects.select_related("submission__image__team", "submission__phase__benchmark").get(pk=job_id)
    phase, image = job.submission.phase, job.submission.image
    cases = list(job.cases.order_by("case_id"))
    labels = {organ.label: organ.name for organ in phase.benchmark.organs.all()}
    directory = job_dir(job)
    data_root = Path(settings.DATA_ROOT)
    try:
        runner.ensure_image(
            image.docker_image_id, data_root / image.tar_path,
            repository=image_check.submission_repository(image.team.slug),
        )
        input_dir, output_dir = runner.prepare_inputs(
            directory,
            [sandbox.InputCase(case.case_id, data_root / case.image_path) for case in cases],
            labels,
            user=settings.SANDBOX_USER,
            output_max_bytes=settings.SANDBOX_OUTPUT_MAX_BYTES if settings.SANDBOX_CAPPED_OUTPUT else None,
            output_max_files=settings.SANDBOX_OUTPUT_MAX_FILES,
        )
        # The run starts now, not before a slow image load: started_at measures the container alone.
        Job.objects.filter(pk=job.pk, attempt=job.attempt, state=Job.State.RUNNING).update(started_at=timezone.now())
        result = runner.run(
            image_id=image.docker_image_id,
            input_dir=input_dir,
            output_dir=output_dir,
            limits=job_limits(phase, len(cases)),
            name=sweep.container_name(job_id=job.pk, attempt=job.attempt),
        )
        collected = runner.collect_outputs(
            output_dir, [case.case_id for case in cases], directory / "predictions",
            max_bytes=settings.SANDBOX_OUTPUT_MAX_BYTES,
        )
        sweep.database_ready()  # the connection sat idle through the run; PostgreSQL may have restarted
    except (sandbox.PlatformError, sandbox.ImageRejected, OSError) as error:
        log.exception("job %s attempt %s: platform error", job_id, job.attempt)
        sweep.database_ready()
        job_platform_error(job=job, error=error)
        return
    finally:
        try:  # unmounts /output whatever happened: a mount must never outlive its attempt
            runner.cleanup(directory)
        except Exception:  # noqa: BLE001 - the run's own outcome matters more; the log tells staff
            log.exception("job %s attempt %s: could not clean up %s", job_id, job.attempt, directory)

    exit_reason, detail, log_tail = result.exit_reason, result.detail, result.log_tail
    if exit_reason == ExitReason.OK and not collected.predictions and result.process_limit_hit:
        # A fork bomb's parent often exits 0 once its children fail to fork: the cause is the process limit.
        exit_reason, detail = ExitReason.TOO_MANY_PROCESSES, (
            f"The container finished without output after failing to create processes or threads (limit "
            f"{settings.SANDBOX_NPROC} together). Cap worker processes and thread pools."
        )
    if exit_reason == ExitReason.OK and not collected.predictions:
        exit_reason, detail = ExitReason.BAD_OUTPUT, "The container finished but wrote no /output/<case_id>.nii.gz file."
    if collected.rejected and exit_reason == ExitReason.OK:
        detail += f" {len(collected.rejected)} of {len(cases)} cases had no usable output."
    if collected.unexpected:
        # Names the container chose are its output: they go with the log tail, never into the detail.
        detail += f" {len(collected.unexpected)} unexpected file(s) in /output were ignored."
        log_tail += "\n[touchstone] ignored unexpected files in /output: " + ", ".join(collected.unexpected[:20])
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempt=job.attempt).update(
            state=Job.State.SCORING,
            exit_reason=exit_reason,
            exit_code=result.exit_code,
            detail=sandbox.safe_text(detail.strip()),
            log_tail=sandbox.safe_text(log_tail, limit=settings.SANDBOX_LOG_TAIL_BYTES),
            last_output_line=result.last_line,
            ran_at=timezone.now(),
            # Now the scorer's to take; the sweep re-sends it if scoring has not finished by then.
            lease_owner="",
            lease_expires_at=timezone.now() + timedelta(seconds=settings.SCORING_DEADLINE_S),
        )
        if updated == 1:
            transaction.on_commit(lambda: tasks.score_job.delay(job_id=job.pk))


def job_platform_error(*, job: Job, error: Exception, expired_before: datetime | None = None) -> bool:
    """Retry a platform fault on a fresh attempt, or give up after JOB_MAX_ATTEMPTS; never charged to the team.

    Acts only on the attempt that failed (compare-and-set on state and attempt), and with `expired_before`
    only if its lease expired before then (the sweep). Returns whether this call moved the job.
    """
    retry = job.attempt - job.attempt_offset < settings.JOB_MAX_ATTEMPTS
    with transaction.atomic():
        rows = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempt=job.attempt)
        if expired_before is not None:
            rows = rows.filter(Q(lease_expires_at__lt=expired_before) | Q(lease_expires_at__isnull=True))
        updated = rows.update(
            state=Job.State.QUEUED if retry else Job.State.FAILED,
            exit_reason=ExitReason.PLATFORM_ERROR,
            # The team reads detail; the engine's words (host paths, engine URL) are for staff only.
            detail=f"Platform error on attempt {job.attempt}; {'retried' if retry else 'not retried'}, never charged.",
            platform_detail=sandbox.safe_text(f"{type(error).__name__}: {error}", limit=4000),
            finished_at=None if retry else timezone.now(),
            queued_at=timezone.now() if retry else None,
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        if retry:
            transaction.on_commit(
                lambda: tasks.run_job.apply_async(kwargs={"job_id": job.pk}, countdown=settings.JOB_RETRY_DELAY_S * job.attempt)
            )
        else:
            progress.submission_fail(
                submission_id=job.submission_id,
                reason=f"Platform error: job {job.index} failed {job.attempt - job.attempt_offset} times. "
                "The organizers have been notified; this submission does not count against your quota.",
            )
    return True
