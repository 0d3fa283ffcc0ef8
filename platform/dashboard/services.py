"""The organizers' actions. Each runs one service of the part it acts on and writes an audit entry (who, what,
when, why) in the same transaction, so an action without its entry, or an entry without its action, never stays."""

from __future__ import annotations

from django.db import transaction

from benchmarks.models import Phase, TeamQuota
from dashboard.models import AuditEntry
from evaluator.choices import ExitReason
from leaderboards import services as leaderboard_services
from leaderboards.models import Disqualification
from submissions import progress
from submissions.models import Job, Submission
from teams.models import Team

Action = AuditEntry.Action


class ActionRefused(Exception):
    """The action cannot be taken as asked; the message says why and what to do."""


def _audit(*, actor, action: str, target: str, reason: str, outcome: str) -> AuditEntry:
    reason = reason.strip()
    if not reason:
        raise ActionRefused("Write the reason for this action: it is kept in the audit log.")
    return AuditEntry.objects.create(actor=actor, action=action, target=target, reason=reason, outcome=outcome)


def job_label(job: Job) -> str:
    return f"job {job.index} of submission #{job.submission_id}"


@transaction.atomic
def job_rerun(*, actor, job_id: int, reason: str) -> AuditEntry:
    job = Job.objects.get(pk=job_id)
    if not progress.job_rerun(job_id=job_id):
        raise ActionRefused(f"{job_label(job).capitalize()} waits for its canary job; rerun the canary instead.")
    return _audit(actor=actor, action=Action.JOB_RERUN, target=job_label(job), reason=reason,
                  outcome=f"Was {job.get_state_display().lower()} after attempt {job.attempt}; queued again.")


@transaction.atomic
def job_cancel(*, actor, job_id: int, reason: str) -> AuditEntry:
    job = Job.objects.get(pk=job_id)
    if job.state in Job.FINAL_STATES:
        raise ActionRefused(f"{job_label(job).capitalize()} has already ended ({job.get_state_display().lower()}).")
    entry = _audit(actor=actor, action=Action.JOB_CANCEL, target=job_label(job), reason=reason, outcome="Cancelled.")
    progress.job_cancel(job_id=job_id)
    return entry


@transaction.atomic
def submission_rerun(*, actor, submission_id: int, reason: str) -> AuditEntry:
    submission = Submission.objects.get(pk=submission_id)
    entry = _audit(actor=actor, action=Action.SUBMISSION_RERUN, target=f"submission #{submission.pk}",
                   reason=reason, outcome=f"Was {submission.get_state_display().lower()}; runs again from the canary.")
    progress.submission_rerun(submission_id=submission_id)
    return entry


@transaction.atomic
def submission_cancel(*, actor, submission_id: int, reason: str) -> AuditEntry:
    submission = Submission.objects.get(pk=submission_id)
    if submission.state in Submission.FINAL_STATES:
        raise ActionRefused(f"Submission #{submission.pk} has already ended ({submission.get_state_display().lower()}).")
    entry = _audit(actor=actor, action=Action.SUBMISSION_CANCEL, target=f"submission #{submission.pk}",
                   reason=reason, outcome="Cancelled with its unfinished jobs.")
    progress.submission_cancel(submission_id=submission_id)
    return entry


@transaction.atomic
def phase_retry_platform_failed(*, actor, phase_id: int, reason: str) -> AuditEntry:
    """Rerun every job of the phase that ended on a platform error (never charged to the team)."""
    phase = Phase.objects.get(pk=phase_id)
    jobs = list(
        Job.objects.filter(submission__phase=phase, state=Job.State.FAILED, exit_reason=ExitReason.PLATFORM_ERROR)
        .exclude(submission__state=Submission.State.CANCELLED)
        .values_list("pk", flat=True)
    )
    entry = _audit(actor=actor, action=Action.PHASE_RETRY_PLATFORM_FAILED, target=f"phase {phase.slug}",
                   reason=reason, outcome=f"{len(jobs)} platform-failed job(s) queued again.")
    for job_id in jobs:
        progress.job_rerun(job_id=job_id)
    return entry


@transaction.atomic
def submission_disqualify(*, actor, submission_id: int, reason: str) -> AuditEntry:
    """Take a submission off the leaderboard; its team reads `reason` on its page. The board is recomputed."""
    submission = Submission.objects.select_related("phase").get(pk=submission_id)
    if Disqualification.objects.filter(submission=submission).exists():
        raise ActionRefused(f"Submission #{submission.pk} is already disqualified.")
    entry = _audit(actor=actor, action=Action.SUBMISSION_DISQUALIFY, target=f"submission #{submission.pk}",
                   reason=reason, outcome="Taken off the leaderboard; the team sees the reason.")
    Disqualification.objects.create(submission=submission, reason=reason.strip(), created_by=actor)
    phase_id = submission.phase_id
    transaction.on_commit(lambda: leaderboard_services.snapshot_compute(phase_id=phase_id))
    return entry


@transaction.atomic
def team_quota_set(*, actor, phase_id: int, team_id: int, submissions_per_day: int, reason: str) -> AuditEntry:
    if submissions_per_day < 0:
        raise ActionRefused("A quota is a number of submissions per day, 0 or more.")
    phase, team = Phase.objects.get(pk=phase_id), Team.objects.get(pk=team_id)
    before = phase.quota_for(team)
    entry = _audit(actor=actor, action=Action.TEAM_QUOTA, target=f"team {team.slug} on phase {phase.slug}",
                   reason=reason, outcome=f"{before} → {submissions_per_day} submissions per day.")
    TeamQuota.objects.update_or_create(phase=phase, team=team, defaults={"submissions_per_day": submissions_per_day})
    return entry


def snapshot_recompute(*, actor, phase_id: int, reason: str) -> AuditEntry:
    phase = Phase.objects.get(pk=phase_id)
    snapshot = leaderboard_services.snapshot_compute(phase_id=phase_id)
    return _audit(actor=actor, action=Action.SNAPSHOT_RECOMPUTE, target=f"phase {phase.slug}", reason=reason,
                  outcome=f"Snapshot {snapshot.pk}: {len(snapshot.rows)} row(s) in {snapshot.compute_seconds:.1f} s.")


def phase_publish(*, actor, phase_id: int, reason: str) -> AuditEntry:
    phase = Phase.objects.get(pk=phase_id)
    if not reason.strip():
        raise ActionRefused("Write the reason for this action: it is kept in the audit log.")
    try:
        snapshot = leaderboard_services.snapshot_publish(phase_id=phase_id, user=actor)
    except leaderboard_services.PublicationRefused as refusal:
        raise ActionRefused(str(refusal)) from None
    return _audit(actor=actor, action=Action.PHASE_PUBLISH, target=f"phase {phase.slug}", reason=reason,
                  outcome=f"Published snapshot {snapshot.pk} ({len(snapshot.rows)} rows), "
                  f"sha256 {snapshot.content_sha256}.")
