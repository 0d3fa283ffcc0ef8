"""Inference without Docker: claiming a job, platform errors and stale jobs (real PostgreSQL, on-commit captured)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from submissions import inference, sweep
from submissions.models import ExitReason, Job, Submission
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_a_job_is_claimed_by_exactly_one_worker():
    job = JobFactory(state=Job.State.QUEUED, submission__state=Submission.State.QUEUED)
    assert inference.job_claim(job_id=job.pk) is True
    assert inference.job_claim(job_id=job.pk) is False  # a redelivered message
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.attempt == 1
    job.submission.refresh_from_db()
    assert job.submission.state == Submission.State.RUNNING


def test_platform_errors_are_retried_then_fail_the_submission_without_using_quota(settings, django_capture_on_commit_callbacks):
    settings.JOB_MAX_ATTEMPTS = 2
    job = JobFactory(state=Job.State.QUEUED, submission__state=Submission.State.QUEUED)
    for attempt in (1, 2):
        assert inference.job_claim(job_id=job.pk)
        job.refresh_from_db()
        with django_capture_on_commit_callbacks() as callbacks:
            inference.job_platform_error(job=job, error=RuntimeError("docker daemon restarted"))
        job.refresh_from_db()
        if attempt == 1:
            assert job.state == Job.State.QUEUED and len(callbacks) == 1
    assert job.state == Job.State.FAILED and job.exit_reason == ExitReason.PLATFORM_ERROR
    job.submission.refresh_from_db()
    assert job.submission.state == Submission.State.FAILED
    assert job.submission.failure_reason.startswith("Platform error")
    assert "docker daemon restarted" in job.platform_detail  # the engine's words are for staff only


def test_a_running_job_whose_lease_expired_is_put_back_and_a_live_one_is_not(django_capture_on_commit_callbacks):
    job = JobFactory(state=Job.State.QUEUED, submission__state=Submission.State.QUEUED)
    live = JobFactory(state=Job.State.QUEUED, submission=job.submission)
    for claimed in (job, live):
        inference.job_claim(job_id=claimed.pk)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks() as callbacks:
        assert sweep.leases_expire() == 1
        assert sweep.leases_expire() == 0  # a second sweep (another host) finds nothing to do
    job.refresh_from_db()
    live.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.lease_owner == "" and "stopped answering" in job.platform_detail
    assert live.state == Job.State.RUNNING and live.lease_expires_at > timezone.now()
    assert len(callbacks) == 1
