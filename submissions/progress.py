"""Progress: after each job, fan out past the canary, fail a broken canary, or complete the submission.

Also the organizers' controls (rerun or cancel a job or a submission, at any state) and the retry of a
validation lost on the platform's side. The sweep that recovers stuck states is in `sweep.py`. Messages
are sent after commit with `robust=True`: with the broker down the state is committed all the same and
the sweep re-sends what it finds waiting (a QUEUED job, a VALIDATING submission).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from leaderboards import tasks as leaderboard_tasks
from submissions import tasks
from submissions.models import CaseResult, ExitReason, Job, Submission

log = logging.getLogger(__name__)
_ANY = object()


def submission_advance(*, submission_id: int) -> bool:
    """After a job ends: fan out once the canary passes, fail a broken canary, complete when all are done.

    Every change is a compare-and-set, so two callers at once (a scorer and the sweep) act once. Returns
    whether this call changed anything.
    """
    submission = Submission.objects.select_related("phase").get(pk=submission_id)
    if submission.state in Submission.FINAL_STATES:
        return False
    jobs = list(submission.jobs.all())
    canary = next(job for job in jobs if job.is_canary)
    if canary.state == Job.State.CANCELLED and any(job.state == Job.State.PENDING for job in jobs):
        # An organizer cancelled the canary: nothing shows the image works, so the rest does not run.
        return _submission_cancel_after_jobs(submission_id=submission_id, cancelled=[canary])
    if canary.state in Job.FINAL_STATES and any(job.state == Job.State.PENDING for job in jobs):
        usable = CaseResult.objects.filter(job=canary, refusal="").exists()
        if canary.state == Job.State.FAILED and not usable:
            return submission_fail(
                submission_id=submission_id,
                reason=f"The canary job failed, so the other {len(jobs) - 1} jobs were not run: "
                f"{ExitReason(canary.exit_reason).label}. {canary.detail}",
            )
        moved = False
        for job in jobs:
            if job.state == Job.State.PENDING:
                queued = Job.objects.filter(pk=job.pk, state=Job.State.PENDING).update(
                    state=Job.State.QUEUED, queued_at=timezone.now()
                )
                if queued == 1:
                    moved = True
                    # robust: a lost message leaves the job QUEUED, and the sweep re-sends it.
                    transaction.on_commit(lambda job_id=job.pk: tasks.run_job.delay(job_id=job_id), robust=True)
        return moved
    jobs = list(Job.objects.filter(submission_id=submission_id))
    if all(job.state in Job.FINAL_STATES for job in jobs):
        cancelled = [job for job in jobs if job.state == Job.State.CANCELLED]
        if cancelled:  # never COMPLETED with cases that did not run: the ranking would skip them
            return _submission_cancel_after_jobs(submission_id=submission_id, cancelled=cancelled)
        completed = Submission.objects.filter(
            pk=submission_id, state__in=[Submission.State.QUEUED, Submission.State.RUNNING]
        ).update(state=Submission.State.COMPLETED, completed_at=timezone.now())
        if completed == 1:
            phase_id = submission.phase_id
            transaction.on_commit(lambda: leaderboard_tasks.compute_leaderboard.delay(phase_id=phase_id), robust=True)
            return True
    return False


def _submission_cancel_after_jobs(*, submission_id: int, cancelled: list[Job]) -> bool:
    """End a submission an organizer cancelled jobs of (compare-and-set); its jobs not yet started are cancelled too."""
    indexes = ", ".join(str(job.index) for job in cancelled)
    reason = (f"Cancelled by the organizers: job {indexes} was cancelled, so this submission cannot complete. "
              "An organizer can rerun the job or the submission.")
    return _submission_end(submission_id=submission_id, state=Submission.State.CANCELLED, reason=reason)


def submission_fail(*, submission_id: int, reason: str) -> bool:
    """Fail a submission that has not ended, and cancel its jobs that have not started. Returns whether it did."""
    return _submission_end(submission_id=submission_id, state=Submission.State.FAILED, reason=reason)


def _submission_end(*, submission_id: int, state: str, reason: str) -> bool:
    """Move a submission that has not ended to `state` (compare-and-set), cancelling its jobs not yet started."""
    with transaction.atomic():
        ended = Submission.objects.filter(pk=submission_id).exclude(state__in=Submission.FINAL_STATES).update(
            state=state, failure_reason=reason, completed_at=timezone.now()
        )
        if ended == 1:
            Job.objects.filter(submission_id=submission_id, state__in=[Job.State.PENDING, Job.State.QUEUED]).update(
                state=Job.State.CANCELLED, exit_reason=ExitReason.CANCELLED, finished_at=timezone.now()
            )
    return ended == 1


def validation_retry(*, submission_id: int, error: Exception, sent_at: datetime | None | object = _ANY) -> bool:
    """Re-send a VALIDATING submission's validation, or fail it platform-side (not charged) past the limit.

    With `sent_at` (the sweep), only if its message is still the one sent then (compare-and-set).
    Returns whether this call moved the submission.
    """
    submission = Submission.objects.filter(pk=submission_id, state=Submission.State.VALIDATING).first()
    if submission is None:
        return False
    rows = Submission.objects.filter(pk=submission_id, state=Submission.State.VALIDATING,
                                     validation_attempts=submission.validation_attempts)
    if sent_at is not _ANY:
        rows = rows.filter(validation_sent_at=sent_at)
    if submission.validation_attempts + 1 >= settings.JOB_MAX_ATTEMPTS:
        reason = (f"Platform error: the image could not be checked ({error}). The organizers have been notified; "
                  "this submission does not count against your quota.")
        return bool(rows.update(state=Submission.State.FAILED, failure_reason=reason[:2000], completed_at=timezone.now()))
    with transaction.atomic():
        if not rows.update(validation_sent_at=timezone.now(), validation_attempts=F("validation_attempts") + 1):
            return False
        transaction.on_commit(lambda: tasks.validate_submission.apply_async(
            kwargs={"submission_id": submission_id}, countdown=settings.JOB_RETRY_DELAY_S
        ), robust=True)
    return True


# --- organizers' controls -------------------------------------------------------------------------
def job_cancel(*, job_id: int) -> bool:
    """Cancel a job at any non-final state. A running container is stopped by its worker (its lease is gone)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state in Job.FINAL_STATES:
            return False
        Job.objects.filter(pk=job_id).update(
            state=Job.State.CANCELLED, exit_reason=ExitReason.CANCELLED, detail="Cancelled by the organizers.",
            finished_at=timezone.now(), lease_owner="", lease_expires_at=None,
        )
        submission_id = job.submission_id
        transaction.on_commit(lambda: submission_advance(submission_id=submission_id), robust=True)
    return True


def submission_cancel(*, submission_id: int) -> bool:
    """Cancel a submission and every job of it that has not ended. Running containers are stopped by their workers."""
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        if submission.state in Submission.FINAL_STATES:
            return False
        Submission.objects.filter(pk=submission_id).update(
            state=Submission.State.CANCELLED, failure_reason="Cancelled by the organizers.", completed_at=timezone.now()
        )
        Job.objects.filter(submission_id=submission_id).exclude(state__in=Job.FINAL_STATES).update(
            state=Job.State.CANCELLED, exit_reason=ExitReason.CANCELLED, detail="Cancelled by the organizers.",
            finished_at=timezone.now(), lease_owner="", lease_expires_at=None,
        )
    return True


def job_rerun(*, job_id: int) -> bool:
    """Run a job again from any state but PENDING: its results are removed, a new attempt starts, the submission reopens.

    A running attempt loses its lease: its worker stops the container and its late writes are refused
    (they compare the attempt number). If the submission had failed or been cancelled, its jobs cancelled
    with it come back too (behind the canary if the canary runs again), so it can complete. A PENDING job
    waits for its canary and is left as it is. Returns whether the job was sent to run.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        submission = Submission.objects.select_for_update().get(pk=job.submission_id)
        if job.state == Job.State.PENDING:
            return False
        CaseResult.objects.filter(job_id=job_id).delete()
        CaseResult.objects.filter(submission_id=job.submission_id, case__in=job.cases.all()).delete()
        _job_reset(job_id=job_id, state=Job.State.QUEUED)
        to_run = [job_id]
        if submission.state in (Submission.State.FAILED, Submission.State.CANCELLED):
            to_run += _jobs_revive(submission_id=submission.pk, rerun=job)
        Submission.objects.filter(pk=job.submission_id).update(
            state=Submission.State.RUNNING, failure_reason="", completed_at=None
        )
        for queued_id in to_run:
            transaction.on_commit(lambda queued_id=queued_id: tasks.run_job.delay(job_id=queued_id), robust=True)
    return True


def _jobs_revive(*, submission_id: int, rerun: Job) -> list[int]:
    """Bring back the CANCELLED jobs of an ended submission one of whose jobs reruns; returns those queued now.

    The canary gates the rest: while it runs again they wait PENDING, once it has passed they are QUEUED.
    """
    cancelled = list(Job.objects.filter(submission_id=submission_id, state=Job.State.CANCELLED).exclude(pk=rerun.pk))
    canary = Job.objects.get(submission_id=submission_id, is_canary=True)
    canary_runs = canary.pk == rerun.pk or canary.state == Job.State.CANCELLED
    queued = []
    for job in cancelled:
        if job.is_canary or not canary_runs:
            _job_reset(job_id=job.pk, state=Job.State.QUEUED)
            queued.append(job.pk)
        else:
            _job_reset(job_id=job.pk, state=Job.State.PENDING)
    return queued


def submission_rerun(*, submission_id: int) -> None:
    """Run a whole submission again: results removed, canary first, then the fan-out as for a new one."""
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        jobs = list(Job.objects.select_for_update().filter(submission_id=submission_id))
        if not jobs:  # never validated: validate again
            Submission.objects.filter(pk=submission_id).update(
                state=Submission.State.VALIDATING, failure_reason="", completed_at=None,
                validation_sent_at=timezone.now(), validation_attempts=0,
            )
            transaction.on_commit(lambda: tasks.validate_submission.delay(submission_id=submission.pk), robust=True)
            return
        CaseResult.objects.filter(submission_id=submission_id).delete()
        for job in jobs:
            _job_reset(job_id=job.pk, state=Job.State.QUEUED if job.is_canary else Job.State.PENDING)
        Submission.objects.filter(pk=submission_id).update(
            state=Submission.State.QUEUED, failure_reason="", completed_at=None
        )
        canary_id = next(job.pk for job in jobs if job.is_canary)
        transaction.on_commit(lambda: tasks.run_job.delay(job_id=canary_id), robust=True)


def _job_reset(*, job_id: int, state: str) -> None:
    Job.objects.filter(pk=job_id).update(
        state=state, exit_reason="", exit_code=None, detail="", platform_detail="", log_tail="", lease_owner="",
        lease_expires_at=None,
        score_attempt=0, attempt_offset=F("attempt"), queued_at=timezone.now() if state == Job.State.QUEUED else None,
        started_at=None, ran_at=None, finished_at=None,
    )
