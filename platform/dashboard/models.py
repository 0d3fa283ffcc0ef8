"""The organizers' audit log: every dashboard action, who took it, when and why."""

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        JOB_RERUN = "job_rerun", "Rerun a job"
        JOB_CANCEL = "job_cancel", "Cancel a job"
        SUBMISSION_RERUN = "submission_rerun", "Rerun a submission"
        SUBMISSION_CANCEL = "submission_cancel", "Cancel a submission"
        PHASE_RETRY_PLATFORM_FAILED = "phase_retry", "Retry the platform-failed jobs of a phase"
        SUBMISSION_DISQUALIFY = "disqualify", "Disqualify a submission"
        TEAM_QUOTA = "team_quota", "Change a team's quota"
        SNAPSHOT_RECOMPUTE = "recompute", "Recompute a leaderboard snapshot"
        PHASE_PUBLISH = "publish", "Publish a leaderboard"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=32, choices=Action.choices)
    target = models.CharField(max_length=200, help_text="What was acted on, e.g. 'job 12 of submission #4'.")
    reason = models.TextField()
    outcome = models.TextField(blank=True, help_text="What the action did.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"
