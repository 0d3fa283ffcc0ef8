"""Scoring: every case of a ran job scored with the evaluator, all organs, stored idempotently."""

from __future__ import annotations

import math
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import evaluator
from submissions import inference, progress, sandbox
from submissions.models import CaseResult, ExitReason, Job


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
    data_root, predictions = Path(settings.DATA_ROOT), inference.job_dir(job) / "predictions"
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
            transaction.on_commit(lambda: progress.submission_advance(submission_id=job.submission_id))


def _missing_output_message(job: Job, case_score) -> str:
    if case_score.refusal is None:
        return ""
    return job.detail or "No output for this case."
