"""Scoring a job through the platform: stored CaseResults follow the conventions (real PostgreSQL, real files)."""

import os
import shutil

import pytest
from django.core.management import call_command

from benchmarks.models import Phase
from submissions import inference, scoring
from submissions.models import CaseResult, ExitReason, Job, Submission
from tests.factories import JobFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def phase(settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    settings.SCORING_PROCESSES = 1
    call_command("make_synthetic_benchmark", size="test", cases_per_site=1, seed=3, stdout=open(os.devnull, "w"))
    return Phase.objects.get(slug="touchstone-synthetic-final")


def test_perfect_missing_and_corrupt_predictions_are_stored_with_their_status(phase, settings, django_capture_on_commit_callbacks):
    submission = SubmissionFactory(phase=phase, state=Submission.State.RUNNING)
    job = JobFactory(submission=submission, index=0, is_canary=True, state=Job.State.SCORING, exit_reason=ExitReason.OK)
    perfect, missing, corrupt = list(phase.cases.order_by("case_id"))[:3]
    job.cases.set([perfect, missing, corrupt])
    predictions = inference.job_dir(job) / "predictions"
    predictions.mkdir(parents=True)
    shutil.copyfile(settings.DATA_ROOT / perfect.reference_path, predictions / f"{perfect.case_id}.nii.gz")
    (predictions / f"{corrupt.case_id}.nii.gz").write_bytes(b"\x1f\x8b definitely not a nifti")

    with django_capture_on_commit_callbacks(execute=False):
        scoring.job_score(job_id=job.pk)
        scoring.job_score(job_id=job.pk)  # a redelivered message changes nothing

    n_organs = phase.benchmark.organs.count()
    assert CaseResult.objects.filter(submission=submission).count() == 3 * n_organs
    for result in CaseResult.objects.filter(case=perfect):
        if result.status == CaseResult.Status.ABSENT:
            assert result.dsc is None and result.nsd is None
        else:
            assert result.status == CaseResult.Status.SCORED
            assert result.dsc == 1.0 and result.nsd == 1.0 and result.hd95_mm == 0.0
    for case in (missing, corrupt):
        rows = CaseResult.objects.filter(case=case)
        present = rows.exclude(status=CaseResult.Status.ABSENT)
        assert present.exists()
        assert set(present.values_list("status", flat=True)) == {CaseResult.Status.REFUSED}
        assert set(present.values_list("dsc", flat=True)) == {0.0}
        assert set(present.values_list("nsd", flat=True)) == {0.0}
        assert all(row.refusal and row.message for row in rows)
    assert CaseResult.objects.filter(case=missing).first().refusal == "missing_output"
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
