"""The business of a submission's life. Tasks, views and commands are thin callers of these functions.

Every step reads its state from the database, checks it, acts, and writes with a compare-and-set, so a
redelivered or duplicated Celery message does nothing harmful.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import socket
import tempfile
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import evaluator
from benchmarks.models import Case, Phase
from submissions import runner as sandbox
from submissions.models import AlgorithmImage, CaseResult, ExitReason, Job, Submission
from teams.models import Team

log = logging.getLogger(__name__)


class SubmissionRefused(Exception):
    """The request cannot be accepted; the message tells the team what to do."""


# --- intake ----------------------------------------------------------------------------------------
def image_store(*, team: Team, stream: BinaryIO, declared_size: int | None = None) -> AlgorithmImage:
    """Stream an uploaded `docker save` tar to DATA_ROOT/images/<sha256>.tar, never holding it in memory."""
    limit = settings.MAX_IMAGE_UPLOAD_BYTES
    if declared_size is not None and declared_size > limit:
        raise SubmissionRefused(f"The image is {declared_size / 2**30:.1f} GiB; the limit is {limit / 2**30:.1f} GiB.")
    images_dir = Path(settings.DATA_ROOT) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=images_dir, prefix="upload-", suffix=".part", delete=False) as part:
        try:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise SubmissionRefused(f"The upload exceeds the {limit / 2**30:.1f} GiB image limit.")
                digest.update(chunk)
                part.write(chunk)
        except BaseException:
            Path(part.name).unlink(missing_ok=True)
            raise
    if declared_size is not None and size != declared_size:
        Path(part.name).unlink(missing_ok=True)
        raise SubmissionRefused(f"The upload was cut short: {size} of {declared_size} bytes arrived. Try again.")
    if size == 0:
        Path(part.name).unlink(missing_ok=True)
        raise SubmissionRefused("The upload is empty. Send the output of `docker save IMAGE`.")
    sha256 = digest.hexdigest()
    final = images_dir / f"{sha256}.tar"
    shutil.move(part.name, final)
    image, _ = AlgorithmImage.objects.get_or_create(
        team=team, sha256=sha256, defaults={"size_bytes": size, "tar_path": str(final.relative_to(settings.DATA_ROOT))}
    )
    return image


def submission_create(*, team: Team, phase: Phase, algorithm: str, image: AlgorithmImage) -> Submission:
    """Accept a submission if the phase is open and the team is within its daily quota."""
    if not phase.is_open:
        raise SubmissionRefused(f"Phase '{phase.slug}' is closed for submissions.")
    if not algorithm.strip():
        raise SubmissionRefused("Name the algorithm (for example --algorithm my-unet).")
    if image.state == AlgorithmImage.State.INVALID:
        raise SubmissionRefused(f"This image was already refused: {image.error}")
    since = timezone.now() - timedelta(days=1)
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=team.pk)  # serialise quota checks of one team
        used = Submission.objects.filter(team=team, phase=phase, created_at__gte=since).exclude(
            state=Submission.State.FAILED, failure_reason__startswith="Platform error"
        ).count()
        if used >= phase.submissions_per_day:
            raise SubmissionRefused(
                f"Team '{team.slug}' has used its {phase.submissions_per_day} submissions to '{phase.slug}' "
                "in the last 24 hours. Try again later."
            )
        submission = Submission.objects.create(team=team, phase=phase, algorithm=algorithm.strip(), image=image)
        transaction.on_commit(lambda: _enqueue("validate_submission", submission.pk))
    return submission


def submission_validate(*, submission_id: int, runner_override: sandbox.SandboxRunner | None = None) -> None:
    """Load the image into Docker and check it; then cut the phase's cases into jobs, canary first."""
    submission = Submission.objects.select_related("image", "phase").get(pk=submission_id)
    if submission.state != Submission.State.VALIDATING:
        return
    image = submission.image
    if image.state != AlgorithmImage.State.READY:
        runner = runner_override or sandbox.SandboxRunner()
        try:
            image.docker_image_id = runner.load_image(Path(settings.DATA_ROOT) / image.tar_path)
            image.state = AlgorithmImage.State.READY
            image.error = ""
        except sandbox.ImageRejected as error:
            image.state, image.error = AlgorithmImage.State.INVALID, str(error)
        image.save(update_fields=["docker_image_id", "state", "error"])
    if image.state == AlgorithmImage.State.INVALID:
        submission_fail(submission_id=submission.pk, reason=f"The image was refused: {image.error}")
        return
    jobs_create(submission=submission)


def _canary_first(cases: list[Case], canary_size: int) -> list[Case]:
    """Order cases so the first `canary_size` come from as many sites as possible (round robin)."""
    by_site: dict[int, list[Case]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.case_id):
        by_site[case.site_id].append(case)
    queues = [by_site[site] for site in sorted(by_site)]
    ordered: list[Case] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    canary, rest = ordered[:canary_size], ordered[canary_size:]
    return canary + sorted(rest, key=lambda c: c.case_id)


def jobs_create(*, submission: Submission) -> list[Job]:
    phase = submission.phase
    cases = _canary_first(list(phase.cases.all()), phase.canary_size)
    if not cases:
        submission_fail(submission_id=submission.pk, reason="Platform error: the phase has no cases.")
        return []
    shards = [cases[: phase.canary_size]]
    rest = cases[phase.canary_size :]
    shards += [rest[i : i + phase.shard_size] for i in range(0, len(rest), phase.shard_size)]
    with transaction.atomic():
        updated = Submission.objects.filter(pk=submission.pk, state=Submission.State.VALIDATING).update(
            state=Submission.State.QUEUED
        )
        if updated != 1:
            return []
        jobs = []
        for index, shard in enumerate(shards):
            job = Job.objects.create(
                submission=submission,
                index=index,
                is_canary=index == 0,
                state=Job.State.QUEUED if index == 0 else Job.State.PENDING,
                queued_at=timezone.now() if index == 0 else None,
            )
            job.cases.set(shard)
            jobs.append(job)
        canary_id = jobs[0].pk
        transaction.on_commit(lambda: _enqueue("run_job", canary_id))
    return jobs


# --- inference --------------------------------------------------------------------------------------
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
            transaction.on_commit(lambda: _enqueue("score_job", job.pk))


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
            transaction.on_commit(lambda: _enqueue("run_job", job.pk, countdown=10 * job.attempt))
        else:
            submission_fail(
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


# --- scoring ----------------------------------------------------------------------------------------
def organ_specs(benchmark) -> list[evaluator.OrganSpec]:
    return [
        evaluator.OrganSpec(label=organ.label, name=organ.name, nsd_tolerance_mm=organ.tolerance_mm)
        for organ in benchmark.organs.all()
    ]


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def job_score(*, job_id: int) -> None:
    """Score every case of a job, all organs, and store the results idempotently."""
    job = Job.objects.select_related("submission__phase__benchmark").get(pk=job_id)
    if job.state != Job.State.SCORING:
        return
    benchmark = job.submission.phase.benchmark
    organs = {organ.label: organ for organ in benchmark.organs.all()}
    cases = list(job.cases.order_by("case_id"))
    data_root, predictions = Path(settings.DATA_ROOT), job_dir(job) / "predictions"
    pairs = []
    for case in cases:
        prediction = predictions / f"{case.case_id}{sandbox.OUTPUT_SUFFIX}"
        pairs.append((data_root / case.reference_path, prediction if prediction.exists() else None))
    scores = evaluator.score_many(
        pairs,
        organ_specs(benchmark),
        processes=settings.SCORING_PROCESSES or None,
        nsd_definition=evaluator.NsdDefinition(benchmark.nsd_definition),
    )
    rows = []
    for case, case_score in zip(cases, scores, strict=True):
        message = case_score.message or _missing_output_message(job, case_score)
        for organ_score in case_score.organs:
            rows.append(
                CaseResult(
                    submission_id=job.submission_id,
                    job=job,
                    case=case,
                    organ=organs[organ_score.label],
                    status=str(organ_score.status),
                    dsc=_finite(organ_score.dsc),
                    nsd=_finite(organ_score.nsd),
                    hd95_mm=_finite(organ_score.hd95_mm),
                    assd_mm=_finite(organ_score.assd_mm),
                    reference_volume_ml=_finite(organ_score.reference_volume_ml),
                    predicted_volume_ml=_finite(organ_score.predicted_volume_ml),
                    refusal=str(case_score.refusal or ""),
                    message=message,
                )
            )
    update_fields = ["job", "status", "dsc", "nsd", "hd95_mm", "assd_mm", "reference_volume_ml",
                     "predicted_volume_ml", "refusal", "message"]
    with transaction.atomic():
        CaseResult.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["submission", "case", "organ"], update_fields=update_fields
        )
        final = Job.State.SUCCEEDED if job.exit_reason == ExitReason.OK else Job.State.FAILED
        updated = Job.objects.filter(pk=job.pk, state=Job.State.SCORING).update(
            state=final, finished_at=timezone.now()
        )
        if updated == 1:
            transaction.on_commit(lambda: submission_advance(submission_id=job.submission_id))


def _missing_output_message(job: Job, case_score) -> str:
    if case_score.refusal is None:
        return ""
    return job.detail or "No output for this case."


# --- a submission's progress --------------------------------------------------------------------------
def submission_advance(*, submission_id: int) -> None:
    """After a job ends: fan out once the canary passes, fail a broken canary, complete when all are done."""
    submission = Submission.objects.select_related("phase").get(pk=submission_id)
    if submission.state in Submission.FINAL_STATES:
        return
    jobs = list(submission.jobs.all())
    canary = next(job for job in jobs if job.is_canary)
    if canary.state in Job.FINAL_STATES and any(job.state == Job.State.PENDING for job in jobs):
        usable = CaseResult.objects.filter(job=canary, refusal="").exists()
        if canary.state == Job.State.FAILED and not usable:
            submission_fail(
                submission_id=submission_id,
                reason=f"The canary job failed, so the other {len(jobs) - 1} jobs were not run: "
                f"{ExitReason(canary.exit_reason).label}. {canary.detail}",
            )
            return
        for job in jobs:
            if job.state == Job.State.PENDING:
                queued = Job.objects.filter(pk=job.pk, state=Job.State.PENDING).update(
                    state=Job.State.QUEUED, queued_at=timezone.now()
                )
                if queued == 1:
                    transaction.on_commit(lambda job_id=job.pk: _enqueue("run_job", job_id))
        return
    if all(job.state in Job.FINAL_STATES for job in Job.objects.filter(submission_id=submission_id)):
        completed = Submission.objects.filter(
            pk=submission_id, state__in=[Submission.State.QUEUED, Submission.State.RUNNING]
        ).update(state=Submission.State.COMPLETED, completed_at=timezone.now())
        if completed == 1:
            phase_id = submission.phase_id
            transaction.on_commit(lambda: _enqueue("compute_leaderboard", phase_id))


def submission_fail(*, submission_id: int, reason: str) -> None:
    with transaction.atomic():
        failed = Submission.objects.filter(pk=submission_id).exclude(state__in=Submission.FINAL_STATES).update(
            state=Submission.State.FAILED, failure_reason=reason, completed_at=timezone.now()
        )
        if failed == 1:
            Job.objects.filter(submission_id=submission_id, state__in=[Job.State.PENDING, Job.State.QUEUED]).update(
                state=Job.State.CANCELLED, exit_reason=ExitReason.CANCELLED, finished_at=timezone.now()
            )


def _enqueue(task_name: str, object_id: int, countdown: int | None = None) -> None:
    """Send 'look at object N' to the named task's queue (tasks are registered under touchstone.*)."""
    current_app.tasks[f"touchstone.{task_name}"].apply_async(kwargs={"object_id": object_id}, countdown=countdown)
