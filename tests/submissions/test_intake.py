"""Intake: a submission is refused with a reason or cut into a canary and shards (real PostgreSQL, on-commit captured)."""

import pytest

from submissions import intake
from submissions.models import AlgorithmImage, Job, Submission
from tests.factories import SubmissionFactory, TeamFactory

pytestmark = pytest.mark.django_db


def test_jobs_put_a_canary_from_every_site_first_then_shards(sharded_phase, django_capture_on_commit_callbacks):
    submission = SubmissionFactory(phase=sharded_phase)
    with django_capture_on_commit_callbacks() as callbacks:
        jobs = intake.jobs_create(submission=submission)
    assert [job.cases.count() for job in jobs] == [3, 4, 4]
    canary_sites = {case.site.code for case in jobs[0].cases.all()}
    assert canary_sites == {"a", "b", "c"}
    assert [job.state for job in jobs] == [Job.State.QUEUED, Job.State.PENDING, Job.State.PENDING]
    all_cases = [case.pk for job in jobs for case in job.cases.all()]
    assert sorted(all_cases) == sorted(sharded_phase.cases.values_list("pk", flat=True))
    assert len(callbacks) == 1  # only the canary is sent
    submission.refresh_from_db()
    assert submission.state == Submission.State.QUEUED


def test_jobs_are_created_once_even_if_validation_runs_twice(sharded_phase):
    submission = SubmissionFactory(phase=sharded_phase)
    intake.jobs_create(submission=submission)
    assert intake.jobs_create(submission=submission) == []
    assert Job.objects.filter(submission=submission).count() == 3


def test_daily_quota_counts_the_teams_submissions_but_not_platform_failures(sharded_phase, django_capture_on_commit_callbacks):
    team = TeamFactory()
    image = AlgorithmImage.objects.create(team=team, sha256="f" * 64, size_bytes=1, tar_path="images/x.tar")
    SubmissionFactory(team=team, phase=sharded_phase, image=image, state=Submission.State.FAILED,
                      failure_reason="Platform error: job 0 failed 3 times")
    with django_capture_on_commit_callbacks():
        intake.submission_create(team=team, phase=sharded_phase, algorithm="a", image=image)
        intake.submission_create(team=team, phase=sharded_phase, algorithm="a", image=image)
        with pytest.raises(intake.SubmissionRefused, match="used its 2 submissions"):
            intake.submission_create(team=team, phase=sharded_phase, algorithm="a", image=image)


def test_closed_phase_and_refused_image_are_refused_with_reasons(sharded_phase):
    team = TeamFactory()
    image = AlgorithmImage.objects.create(team=team, sha256="e" * 64, size_bytes=1, tar_path="images/x.tar",
                                          state=AlgorithmImage.State.INVALID, error="The image is linux/arm64")
    with pytest.raises(intake.SubmissionRefused, match="arm64"):
        intake.submission_create(team=team, phase=sharded_phase, algorithm="a", image=image)
    sharded_phase.is_open = False
    sharded_phase.save()
    with pytest.raises(intake.SubmissionRefused, match="closed"):
        intake.submission_create(team=team, phase=sharded_phase, algorithm="a", image=image)
