"""Progress: after each job, fan out past the canary, fail a broken canary, or complete the submission."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from leaderboards import tasks as leaderboard_tasks
from submissions import tasks
from submissions.models import CaseResult, ExitReason, Job, Submission


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
                    transaction.on_commit(lambda job_id=job.pk: tasks.run_job.delay(job_id=job_id))
        return
    if all(job.state in Job.FINAL_STATES for job in Job.objects.filter(submission_id=submission_id)):
        completed = Submission.objects.filter(
            pk=submission_id, state__in=[Submission.State.QUEUED, Submission.State.RUNNING]
        ).update(state=Submission.State.COMPLETED, completed_at=timezone.now())
        if completed == 1:
            phase_id = submission.phase_id
            transaction.on_commit(lambda: leaderboard_tasks.compute_leaderboard.delay(phase_id=phase_id))


def submission_fail(*, submission_id: int, reason: str) -> None:
    with transaction.atomic():
        failed = Submission.objects.filter(pk=submission_id).exclude(state__in=Submission.FINAL_STATES).update(
            state=Submission.State.FAILED, failure_reason=reason, completed_at=timezone.now()
        )
        if failed == 1:
            Job.objects.filter(submission_id=submission_id, state__in=[Job.State.PENDING, Job.State.QUEUED]).update(
                state=Job.State.CANCELLED, exit_reason=ExitReason.CANCELLED, finished_at=timezone.now()
            )
