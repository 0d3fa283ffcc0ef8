"""Scoring: every case of a ran job scored with the evaluator, all organs, stored idempotently."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import evaluator
from benchmarks import tasks as benchmark_tasks  # also registers them wherever scoring runs
from benchmarks.services import reference_cache_root
from evaluator.scoring import reference_cache
from submissions import inference, progress, sandbox, sweep, tasks
from submissions.models import CaseResult, ExitReason, Job

log = logging.getLogger(__name__)


def organ_specs(benchmark) -> list[evaluator.OrganSpec]:
    return [
        evaluator.OrganSpec(label=organ.label, name=organ.name, nsd_tolerance_mm=organ.tolerance_mm)
        for organ in benchmark.organs.all()
    ]


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def job_claim_scoring(*, job_id: int, owner: str) -> bool:
    """Take a SCORING job under a lease (compare-and-set): one scorer at a time, a duplicate message loses."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, state=Job.State.SCORING)
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))
        .update(lease_owner=owner, lease_expires_at=sweep.lease_until(), score_attempt=F("score_attempt") + 1)
    )


def job_score(*, job_id: int) -> None:
    """Score a job under a lease; any exception becomes a platform error with a retry, never a stuck job."""
    sweep.database_ready()
    owner = sweep.lease_owner_new()
    if not job_claim_scoring(job_id=job_id, owner=owner):
        return
    job = Job.objects.get(pk=job_id)
    with sweep.LeaseKeeper(job_id=job_id, attempt=job.attempt, owner=owner, state=Job.State.SCORING):
        try:
            _job_score_cases(job_id=job_id, owner=owner)
        except Exception as error:  # noqa: BLE001 - the one catch-all: never leave a job SCORING
            log.exception("job %s: scoring failed on the platform's side", job_id)
            sweep.database_ready()
            score_platform_error(job=job, error=error, owner=owner)


def score_platform_error(
    *, job: Job, error: Exception, owner: str | None = None, expired_before: datetime | None = None
) -> bool:
    """Send a job's scoring again, or fail it platform-side (not charged) after JOB_MAX_ATTEMPTS scorings.

    Compare-and-set on the lease: the scorer's own (`owner`), or one that expired (`expired_before`, the sweep).
    """
    job.refresh_from_db()
    rows = Job.objects.filter(pk=job.pk, state=Job.State.SCORING, score_attempt=job.score_attempt)
    if owner is not None:
        rows = rows.filter(lease_owner=owner)
    if expired_before is not None:
        rows = rows.filter(lease_expires_at__lt=expired_before)
    if job.score_attempt >= settings.JOB_MAX_ATTEMPTS:
        with transaction.atomic():
            if not rows.update(state=Job.State.FAILED, exit_reason=ExitReason.PLATFORM_ERROR, finished_at=timezone.now(),
                               detail=f"Platform error: scoring failed {job.score_attempt} times ({error})."[:2000],
                               lease_owner="", lease_expires_at=None):
                return False
            progress.submission_fail(
                submission_id=job.submission_id,
                reason=f"Platform error: job {job.index} could not be scored ({error}). The organizers have been "
                "notified; this submission does not count against your quota.",
            )
        return True
    with transaction.atomic():
        if not rows.update(
            lease_owner="", lease_expires_at=timezone.now() + timedelta(seconds=settings.SCORING_DEADLINE_S)
        ):
            return False
        transaction.on_commit(lambda: tasks.score_job.apply_async(
            kwargs={"job_id": job.pk}, countdown=settings.JOB_RETRY_DELAY_S * max(job.score_attempt, 1)
        ))
    return True


def _job_score_cases(*, job_id: int, owner: str) -> None:
    """Score every case of a job, all organs, and store the results idempotently."""
    job = Job.objects.select_related("submission__phase__benchmark").get(pk=job_id)
    if job.state != Job.State.SCORING:
        return
    benchmark = job.submission.phase.benchmark
    organs = {organ.label: organ for organ in benchmark.organs.all()}
    cases = list(job.cases.order_by("case_id"))
    data_root, predictions = Path(settings.DATA_ROOT), inference.job_dir(job) / "predictions"
    pairs = []
    for case in cases:
        prediction = predictions / f"{case.case_id}{sandbox.OUTPUT_SUFFIX}"
        pairs.append((data_root / case.reference_path, prediction if prediction.exists() else None))
    caches = _reference_caches(benchmark=benchmark, cases=cases, references=[reference for reference, _ in pairs])
    scores = evaluator.score_many(
        pairs,
        organ_specs(benchmark),
        processes=settings.SCORING_PROCESSES or None,
        nsd_definition=evaluator.NsdDefinition(benchmark.nsd_definition),
        reference_caches=caches,
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
    sweep.database_ready()  # scoring a large job takes minutes; PostgreSQL may have restarted meanwhile
    update_fields = ["job", "status", "dsc", "nsd", "hd95_mm", "assd_mm", "reference_volume_ml",
                     "predicted_volume_ml", "refusal", "message"]
    with transaction.atomic():
        # Only while this scorer still holds the job (not rerun, cancelled or taken over meanwhile).
        if not Job.objects.select_for_update().filter(pk=job.pk, state=Job.State.SCORING, lease_owner=owner).exists():
            return
        CaseResult.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["submission", "case", "organ"], update_fields=update_fields
        )
        final = Job.State.SUCCEEDED if job.exit_reason == ExitReason.OK else Job.State.FAILED
        updated = Job.objects.filter(pk=job.pk, state=Job.State.SCORING, lease_owner=owner).update(
            state=final, finished_at=timezone.now(), lease_owner="", lease_expires_at=None
        )
        if updated == 1:
            transaction.on_commit(lambda: progress.submission_advance(submission_id=job.submission_id))


def _reference_caches(*, benchmark, cases, references: list[Path]) -> list[Path | None]:
    """Each case's valid reference cache entry, or None (scoring then reads the reference file, with the
    same results); a missing or outdated entry (another reference content, another evaluator version) is
    rebuilt in the background for the next submission."""
    root = reference_cache_root()
    caches = [
        reference_cache.lookup(root, benchmark.slug, case.case_id, reference)
        for case, reference in zip(cases, references, strict=True)
    ]
    stale = [case.pk for case, cache in zip(cases, caches, strict=True) if cache is None]
    for case_pk in stale:
        transaction.on_commit(lambda case_pk=case_pk: benchmark_tasks.build_reference_cache.delay(case_pk=case_pk))
    return caches


def _missing_output_message(job: Job, case_score) -> str:
    if case_score.refusal is None:
        return ""
    return job.detail or "No output for this case."
