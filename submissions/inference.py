"""Inference: a job claimed by compare-and-set, its container run in the sandbox, its outputs collected."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from benchmarks.models import Phase
from submissions import progress, sandbox, tasks
from submissions.models import ExitReason, Job, Submission

log = logging.getLogger(__name__)


def job_claim(*, job_id: int) -> bool:
    """Compare-and-set QUEUED → RUNNING. Exactly one worker wins; a redelivered message loses."""
    claimed = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, attempt=F("attempt") + 1, started_at=timezone.now(), worker=socket.gethostname()
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
        pids_limit=settings.SANDBOX_PIDS_LIMIT,
        tmpfs_mb=settings.SANDBOX_TMPFS_MB,
        user=settings.SANDBOX_USER,
        runtime=settings.SANDBOX_RUNTIME,
        gpu_driver=settings.SANDBOX_GPU_DRIVER,
    )


def job_dir(job: Job) -> Path:
    return Path(settings.DATA_ROOT) / "jobs" / f"{job.submission_id}" / f"{job.index}"


def job_run(*, job_id: int, runner_override: sandbox.SandboxRunner | None = None) -> None:
    """Run a claimed job's container and collect its outputs; then hand it to the scoring queue."""
    if not job_claim(job_id=job_id):
        return
    job = Job.objects.select_related("submission__image", "submission__phase__benchmark").get(pk=job_id)
    phase, image = job.submission.phase, job.submission.image
    cases = list(job.cases.order_by("case_id"))
    labels = {organ.label: organ.name for organ in phase.benchmark.organs.all()}
    directory = job_dir(job)
    data_root = Path(settings.DATA_ROOT)
    try:
        runner = runner_override or sandbox.SandboxRunner(log_tail_bytes=settings.SANDBOX_LOG_TAIL_BYTES)
        runner.ensure_image(image.docker_image_id, data_root / image.tar_path)
        input_dir, output_dir = runner.prepare_inputs(
            directory,
            [sandbox.InputCase(case.case_id, data_root / case.image_path) for case in cases],
            labels,
            user=settings.SANDBOX_USER,
        )
        result = runner.run(
            image_id=image.docker_image_id,
            input_dir=input_dir,
            output_dir=output_dir,
            limits=job_limits(phase, len(cases)),
            name=f"touchstone-job-{job.pk}-{job.attempt}",
        )
        collected = runner.collect_outputs(
            output_dir, [case.case_id for case in cases], directory / "predictions",
            max_bytes=settings.SANDBOX_OUTPUT_MAX_BYTES,
        )
        runner.cleanup(directory)
    except (sandbox.PlatformError, sandbox.ImageRejected, OSError) as error:
        log.exception("job %s attempt %s: platform error", job_id, job.attempt)
        _job_platform_error(job=job, error=error)
        return

    exit_reason, detail = result.exit_reason, result.detail
    if exit_reason == sandbox.OK and not collected.predictions:
        exit_reason, detail = ExitReason.BAD_OUTPUT, "The container finished but wrote no /output/<case_id>.nii.gz file."
    if collected.rejected and exit_reason == sandbox.OK:
        detail += f" {len(collected.rejected)} of {len(cases)} cases had no usable output."
    if collected.unexpected:
        detail += f" Ignored unexpected files in /output: {', '.join(collected.unexpected[:5])}."
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempt=job.attempt).update(
            state=Job.State.SCORING,
            exit_reason=exit_reason,
            exit_code=result.exit_code,
            detail=detail.strip(),
            log_tail=result.log_tail,
            ran_at=timezone.now(),
        )
        if updated == 1:
            transaction.on_commit(lambda: tasks.score_job.delay(job_id=job.pk))


def _job_platform_error(*, job: Job, error: Exception) -> None:
    """Retry a platform fault on a fresh attempt, or give up after JOB_MAX_ATTEMPTS."""
    retry = job.attempt < settings.JOB_MAX_ATTEMPTS
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempt=job.attempt).update(
            state=Job.State.QUEUED if retry else Job.State.FAILED,
            exit_reason=ExitReason.PLATFORM_ERROR,
            detail=f"Platform error on attempt {job.attempt}: {error}",
            finished_at=None if retry else timezone.now(),
        )
        if updated != 1:
            return
        if retry:
            transaction.on_commit(lambda: tasks.run_job.apply_async(kwargs={"job_id": job.pk}, countdown=10 * job.attempt))
        else:
            progress.submission_fail(
                submission_id=job.submission_id,
                reason=f"Platform error: job {job.index} failed {job.attempt} times ({error}). "
                "The organizers have been notified; this submission does not count against your quota.",
            )


def jobs_requeue_stale(*, grace_s: int = 600) -> int:
    """Put back RUNNING jobs whose worker died (past their time limit plus a grace period)."""
    requeued = 0
    for job in Job.objects.filter(state=Job.State.RUNNING).select_related("submission__phase"):
        limit = job_limits(job.submission.phase, job.cases.count()).time_limit_s + grace_s
        if job.started_at and (timezone.now() - job.started_at).total_seconds() > limit:
            _job_platform_error(job=job, error=RuntimeError("the worker running it stopped answering"))
            requeued += 1
    return requeued
