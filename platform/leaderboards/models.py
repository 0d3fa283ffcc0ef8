"""Leaderboard snapshots: computed off the request path by a Celery task, read by the pages."""

from django.db import models

from benchmarks.models import Phase


class LeaderboardSnapshot(models.Model):
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="snapshots")
    created_at = models.DateTimeField(auto_now_add=True)
    # The submissions ranked, each the latest completed one of its (team, algorithm).
    submission_ids = models.JSONField(default=list)
    # Ranked rows: team, algorithm, headline and per-organ means with N, failures.
    rows = models.JSONField(default=list)
    # The statistics (CIs, significance, rank stability, breakdowns) from evaluator.stats.
    statistics = models.JSONField(default=dict)
    compute_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"{self.phase} @ {self.created_at:%Y-%m-%d %H:%M}"
