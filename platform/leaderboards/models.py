"""Leaderboard snapshots (computed off the request path, frozen when published), team picks, disqualifications."""

from django.conf import settings
from django.db import models

from benchmarks.models import Phase
from submissions.models import Submission
from teams.models import Team


class LeaderboardSnapshot(models.Model):
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="snapshots")
    created_at = models.DateTimeField(auto_now_add=True)
    # The submissions ranked: one per team, chosen by the phase's `public_row` setting.
    submission_ids = models.JSONField(default=list)
    # Ranked rows: team, algorithm, headline and per-organ means with N, failures.
    rows = models.JSONField(default=list)
    # The statistics (CIs, significance, rank stability, breakdowns) from evaluator.stats.
    statistics = models.JSONField(default=dict)
    compute_seconds = models.FloatField(default=0.0)
    # Publication: a published snapshot is frozen and citable. It records how it was computed and hashes it.
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    evaluator_version = models.CharField(max_length=200, blank=True)
    settings = models.JSONField(default=dict, blank=True, help_text="The benchmark and phase settings used.")
    image_digests = models.JSONField(default=dict, blank=True, help_text="Submission id -> image digests.")
    content_sha256 = models.CharField(max_length=64, blank=True, help_text="sha256 of the canonical JSON.")

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        published = f" (published {self.published_at:%Y-%m-%d})" if self.published_at else ""
        return f"{self.phase} @ {self.created_at:%Y-%m-%d %H:%M}{published}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class PublicPick(models.Model):
    """The submission a team picks as its one row, on phases where the team picks."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="public_picks")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="public_picks")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phase", "team"], name="public_pick_unique")]

    def __str__(self) -> str:
        return f"{self.team} picks #{self.submission_id} on {self.phase.slug}"


class Disqualification(models.Model):
    """A submission taken off the leaderboard by the organizers, with the reason its team reads."""

    submission = models.OneToOneField(Submission, on_delete=models.CASCADE, related_name="disqualification")
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"#{self.submission_id} disqualified"
