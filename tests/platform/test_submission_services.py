"""A submission's life without Docker: sharding, claiming, quotas, failures. Real PostgreSQL, on-commit captured."""

from datetime import timedelta

import pytest
from django.utils import timezone

from submissions import inference, intake, progress
from submissions.models import AlgorithmImage, ExitReason, Job, Submission
from tests.factories import CaseFactory, JobFactory, PhaseFactory, SiteFactory, SubmissionFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def phase():
    phase = PhaseFactory(canary_size=3, shard_size=4, submissions_per_day=2)
    sites = [SiteFactory(benchmark=phase.benchmark, code=code) for code in ("a", "b", "c")]
    cases = [CaseFactory(site=sites[i % 3], benchmark=phase.benchmark, case_id=f"c{i:02d}") for i in range(11)]
    phase.cases.set(cases)
    return phase


def test_jobs_put_a_canary_from_every_site_first_then_shards(phase, django_capture_on_commit_callbacks):
    submission = SubmissionFactory(phase=phase)
    with django_capture_on_commit_callbacks() as callbacks:
        jobs = intake.jobs_create(submission=submission)
    assert [job.cases.count() for job in jobs] == [3, 4, 4]
    canary_sites = {case.site.code for case in jobs[0].cases.all()}
    assert canary_sites == {"a", "b", "c"}
    assert [job.state for job in jobs] == [Job.State.QUEUED, Job.State.PENDING, Job.State.PENDING]
    all_cases = [case.pk for job in jobs for case in job.cases.all()]
    assert sorted(all_cases) == sorted(phase.cases.values_list("pk", flat=True))
    assert len(callbacks) == 1  # only the canary is sent
    submission.refresh_from_db()
    assert submission.state == Submission.State.QUEUED


def test_jobs_are_created_once_even_if_validation_runs_twice(phase):
    submission = SubmissionFactory(phase=phase)
    intake.jobs_create(submission=submission)
    assert intake.jobs_create(submission=submission) == []
    assert Job.objects.filter(submission=submission).count() == 3


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
            inference._job_platform_error(job=job, error=RuntimeError("docker daemon restarted"))
        job.refresh_from_db()
        if attempt == 1:
            assert job.state == Job.State.QUEUED and len(callbacks) == 1
    assert job.state == Job.State.FAILED and job.exit_reason == ExitReason.PLATFORM_ERROR
    job.submission.refresh_from_db()
    assert job.submission.state == Submission.State.FAILED
    assert job.submission.failure_reason.startswith("Platform error")
    assert "docker daemon restarted" in job.submission.failure_reason


def test_a_stale_running_job_is_put_back(django_capture_on_commit_callbacks):
    job = JobFactory(state=Job.State.QUEUED, submission__state=Submission.State.QUEUED)
    job.cases.add(CaseFactory(benchmark=job.submission.phase.benchmark))
    inference.job_claim(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(hours=5))
    with django_capture_on_commit_callbacks():
        assert inference.jobs_requeue_stale() == 1
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED
    assert "stopped answering" in job.detail


def test_daily_quota_counts_the_teams_submissions_but_not_platform_failures(phase, django_capture_on_commit_callbacks):
    team = TeamFactory()
    image = AlgorithmImage.objects.create(team=team, sha256="f" * 64, size_bytes=1, tar_path="images/x.tar")
    SubmissionFactory(team=team, phase=phase, image=image, state=Submission.State.FAILED,
                      failure_reason="Platform error: job 0 failed 3 times")
    with django_capture_on_commit_callbacks():
        intake.submission_create(team=team, phase=phase, algorithm="a", image=image)
        intake.submission_create(team=team, phase=phase, algorithm="a", image=image)
        with pytest.raises(intake.SubmissionRefused, match="used its 2 submissions"):
            intake.submission_create(team=team, phase=phase, algorithm="a", image=image)


def test_closed_phase_and_refused_image_are_refused_with_reasons(phase):
    team = TeamFactory()
    image = AlgorithmImage.objects.create(team=team, sha256="e" * 64, size_bytes=1, tar_path="images/x.tar",
                                          state=AlgorithmImage.State.INVALID, error="The image is linux/arm64")
    with pytest.raises(intake.SubmissionRefused, match="arm64"):
        intake.submission_create(team=team, phase=phase, algorithm="a", image=image)
    phase.is_open = False
    phase.save()
    with pytest.raises(intake.SubmissionRefused, match="closed"):
        intake.submission_create(team=team, phase=phase, algorithm="a", image=image)


def test_a_failed_canary_without_usable_output_stops_the_fan_out(phase, django_capture_on_commit_callbacks):
    submission = SubmissionFactory(phase=phase)
    jobs = intake.jobs_create(submission=submission)
    Job.objects.filter(pk=jobs[0].pk).update(state=Job.State.FAILED, exit_reason=ExitReason.CRASHED,
                                             detail="The container exited with code 1.")
    with django_capture_on_commit_callbacks() as callbacks:
        progress.submission_advance(submission_id=submission.pk)
    submission.refresh_from_db()
    assert submission.state == Submission.State.FAILED
    assert "canary" in submission.failure_reason and "exited with code 1" in submission.failure_reason
    assert set(Job.objects.filter(submission=submission).exclude(pk=jobs[0].pk).values_list("state", flat=True)) == {
        Job.State.CANCELLED
    }
    assert not callbacks
