"""Celery task that recomputes a phase's leaderboard snapshot."""

from leaderboards import services
from touchstone_site.celery import platform_task


@platform_task(name="compute_leaderboard", queue="default")
def compute_leaderboard(*, object_id: int) -> None:
    services.snapshot_compute(phase_id=object_id)
