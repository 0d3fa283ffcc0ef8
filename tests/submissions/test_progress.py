"""Progress: a submission advances, or stops, as its jobs finish (real PostgreSQL, on-commit captured)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from submissions import intake, progress
from submissions.models import CaseResult, ExitReason, Job, Submission
from tests.factories import OrganFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


def test_a_failed_canary_without_usable_output_stops_the_fan_out(sharded_phase, django_capture_on_commit_callbacks):
    submission = SubmissionFactory(phase=sharded_phase)
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


# --- organizers' controls, from every state ----------------------------------------------------------------
LIVE_JOB_STATES = [Job.State.PENDING, Job.State.QUEUED, Job.State.RUNNING, Job.State.SCORING]


def _submission_with_jobs(phase):
    submission = SubmissionFactory(phase=phase)
    return submission, intake.jobs_create(submission=submission)


def _job_in(job: Job, state: str, **values) -> Job:
    Submission.objects.filter(pk=job.submission_id).update(state=Submission.State.RUNNING)
    lease = {"lease_owner": "host:1:abc", "lease_expires_at": timezone.now() + timedelta(minutes=5)}
    Job.objects.filter(pk=job.pk).update(
        state=state, attempt=2, **(lease if state in (Job.State.RUNNING, Job.State.SCORING) else {}), **values
    )
    job.refresh_from_db()
    return job


def _score(job: Job) -> None:
    """A stored result for each case of the job (one organ), as scoring writes them."""
    organ = OrganFactory(benchmark=job.submission.phase.benchmark, label=100 + job.pk, name=f"organ-of-{job.pk}")
    for case in job.cases.all():
        CaseResult.objects.create(submission_id=job.submission_id, job=job, case=case, organ=organ, status="present",
                                  dsc=0.9)


@pytest.mark.parametrize("state", LIVE_JOB_STATES)
def test_an_organizer_cancels_a_job_in_any_live_state_and_its_worker_loses_the_lease(
    sharded_phase, state, django_capture_on_commit_callbacks
):
    _submission, jobs = _submission_with_jobs(sharded_phase)
    job = _job_in(jobs[1], state)

    with django_capture_on_commit_callbacks(execute=False):
        assert progress.job_cancel(job_id=job.pk) is True

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.exit_reason == ExitReason.CANCELLED
    assert job.lease_owner == "" and job.lease_expires_at is None
    # The worker's renewal compares its lease: it finds the row gone and stops the container.
    assert not Job.objects.filter(pk=job.pk, state=state, lease_owner="host:1:abc").exists()


@pytest.mark.parametrize("state", [Job.State.SUCCEEDED, Job.State.FAILED, Job.State.CANCELLED])
def test_cancelling_an_ended_job_changes_nothing(sharded_phase, state):
    _submission, jobs = _submission_with_jobs(sharded_phase)
    job = _job_in(jobs[0], state, exit_reason=ExitReason.OK)
    assert progress.job_cancel(job_id=job.pk) is False
    assert Job.objects.get(pk=job.pk).state == state


def test_a_submission_whose_job_an_organizer_cancelled_ends_cancelled_not_completed(
    sharded_phase, django_capture_on_commit_callbacks
):
    submission, jobs = _submission_with_jobs(sharded_phase)
    Job.objects.filter(submission=submission).update(state=Job.State.SUCCEEDED, exit_reason=ExitReason.OK)
    job = _job_in(jobs[2], Job.State.RUNNING)

    with django_capture_on_commit_callbacks(execute=True):
        progress.job_cancel(job_id=job.pk)

    submission.refresh_from_db()
    assert submission.state == Submission.State.CANCELLED
    assert "job 2 was cancelled" in submission.failure_reason


def test_cancelling_the_canary_does_not_start_the_fan_out(sharded_phase, django_capture_on_commit_callbacks):
    submission, jobs = _submission_with_jobs(sharded_phase)
    canary = _job_in(jobs[0], Job.State.RUNNING)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        progress.job_cancel(job_id=canary.pk)

    submission.refresh_from_db()
    assert submission.state == Submission.State.CANCELLED
    assert set(Job.objects.filter(submission=submission).values_list("state", flat=True)) == {Job.State.CANCELLED}
    assert len(callbacks) == 1  # the advance itself; no run_job was sent


@pytest.mark.parametrize("state", [Submission.State.VALIDATING, Submission.State.QUEUED, Submission.State.RUNNING])
def test_an_organizer_cancels_a_submission_in_any_live_state(sharded_phase, state):
    submission = SubmissionFactory(phase=sharded_phase)
    jobs = []
    if state != Submission.State.VALIDATING:
        jobs = intake.jobs_create(submission=submission)
        _job_in(jobs[0], Job.State.SUCCEEDED, exit_reason=ExitReason.OK)
        _job_in(jobs[1], Job.State.RUNNING)
        Submission.objects.filter(pk=submission.pk).update(state=state)

    assert progress.submission_cancel(submission_id=submission.pk) is True

    submission.refresh_from_db()
    assert submission.state == Submission.State.CANCELLED and submission.completed_at is not None
    states = dict(Job.objects.filter(submission=submission).values_list("index", "state"))
    if jobs:
        assert states == {0: Job.State.SUCCEEDED, 1: Job.State.CANCELLED, 2: Job.State.CANCELLED}
        assert not Job.objects.filter(submission=submission).exclude(lease_owner="").exists()


@pytest.mark.parametrize("state", list(Submission.FINAL_STATES))
def test_cancelling_an_ended_submission_changes_nothing(sharded_phase, state):
    submission = SubmissionFactory(phase=sharded_phase, state=state)
    assert progress.submission_cancel(submission_id=submission.pk) is False
    assert Submission.objects.get(pk=submission.pk).state == state


@pytest.mark.parametrize("state", [Job.State.QUEUED, Job.State.RUNNING, Job.State.SCORING, Job.State.SUCCEEDED,
                                   Job.State.FAILED, Job.State.CANCELLED])
def test_an_organizer_reruns_a_job_from_any_state_on_a_new_attempt(
    sharded_phase, state, django_capture_on_commit_callbacks
):
    submission, jobs = _submission_with_jobs(sharded_phase)
    canary = _job_in(jobs[0], Job.State.SUCCEEDED, exit_reason=ExitReason.OK)
    job = _job_in(jobs[1], state, exit_reason=ExitReason.PLATFORM_ERROR, detail="Platform error on attempt 2",
                  platform_detail="engine said no", finished_at=timezone.now())
    _score(canary)
    _score(job)
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.COMPLETED, completed_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert progress.job_rerun(job_id=job.pk) is True

    job.refresh_from_db()
    submission.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.attempt == 2 and job.attempt_offset == 2
    assert (job.exit_reason, job.detail, job.platform_detail, job.lease_owner) == ("", "", "", "")
    assert job.finished_at is None and job.queued_at is not None
    assert submission.state == Submission.State.RUNNING and submission.completed_at is None
    assert not CaseResult.objects.filter(job=job).exists()
    assert CaseResult.objects.filter(job=canary).count() == canary.cases.count()  # the others' results stay
    assert len(callbacks) == 1


def test_rerunning_a_job_waiting_for_its_canary_leaves_it_waiting(sharded_phase, django_capture_on_commit_callbacks):
    _submission, jobs = _submission_with_jobs(sharded_phase)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert progress.job_rerun(job_id=jobs[1].pk) is False
    assert Job.objects.get(pk=jobs[1].pk).state == Job.State.PENDING and not callbacks


def test_rerunning_the_platform_failed_canary_of_a_failed_submission_brings_its_jobs_back_behind_it(
    sharded_phase, django_capture_on_commit_callbacks
):
    submission, jobs = _submission_with_jobs(sharded_phase)
    Job.objects.filter(pk=jobs[0].pk).update(state=Job.State.FAILED, exit_reason=ExitReason.PLATFORM_ERROR, attempt=3)
    progress.submission_fail(submission_id=submission.pk, reason="Platform error: job 0 failed 3 times.")
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs[1:]]).values_list("state", flat=True)) == {
        Job.State.CANCELLED
    }

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        progress.job_rerun(job_id=jobs[0].pk)

    states = dict(Job.objects.filter(submission=submission).values_list("index", "state"))
    assert states == {0: Job.State.QUEUED, 1: Job.State.PENDING, 2: Job.State.PENDING}
    assert Submission.objects.get(pk=submission.pk).state == Submission.State.RUNNING
    assert len(callbacks) == 1  # the canary only; the fan-out follows it as for a new submission


def test_rerunning_a_job_of_a_cancelled_submission_whose_canary_passed_queues_its_cancelled_jobs(
    sharded_phase, django_capture_on_commit_callbacks
):
    submission, jobs = _submission_with_jobs(sharded_phase)
    _job_in(jobs[0], Job.State.SUCCEEDED, exit_reason=ExitReason.OK)
    _job_in(jobs[1], Job.State.RUNNING)
    progress.submission_cancel(submission_id=submission.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        progress.job_rerun(job_id=jobs[1].pk)

    states = dict(Job.objects.filter(submission=submission).values_list("index", "state"))
    assert states == {0: Job.State.SUCCEEDED, 1: Job.State.QUEUED, 2: Job.State.QUEUED}
    assert len(callbacks) == 2


@pytest.mark.parametrize("state", [Submission.State.QUEUED, Submission.State.RUNNING, Submission.State.COMPLETED,
                                   Submission.State.FAILED, Submission.State.CANCELLED])
def test_an_organizer_reruns_a_submission_from_any_state_canary_first(
    sharded_phase, state, django_capture_on_commit_callbacks
):
    submission, jobs = _submission_with_jobs(sharded_phase)
    for job in jobs:
        _job_in(job, Job.State.SUCCEEDED if state == Submission.State.COMPLETED else Job.State.RUNNING,
                exit_reason=ExitReason.OK)
        _score(job)
    Submission.objects.filter(pk=submission.pk).update(state=state, failure_reason="something")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        progress.submission_rerun(submission_id=submission.pk)

    submission.refresh_from_db()
    assert submission.state == Submission.State.QUEUED and submission.failure_reason == ""
    assert not CaseResult.objects.filter(submission=submission).exists()
    rows = {job.index: (job.state, job.attempt_offset, job.lease_owner) for job in submission.jobs.all()}
    assert rows == {0: (Job.State.QUEUED, 2, ""), 1: (Job.State.PENDING, 2, ""), 2: (Job.State.PENDING, 2, "")}
    assert len(callbacks) == 1


def test_rerunning_a_submission_that_never_validated_validates_it_again(
    sharded_phase, django_capture_on_commit_callbacks
):
    submission = SubmissionFactory(phase=sharded_phase, state=Submission.State.FAILED, validation_attempts=3)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        progress.submission_rerun(submission_id=submission.pk)
    submission.refresh_from_db()
    assert submission.state == Submission.State.VALIDATING and submission.validation_attempts == 0
    assert len(callbacks) == 1
