"""Celery task that recomputes a phase's leaderboard snapshot."""

from leaderboards import services
from touchstone_site.celery import Queue, platform_task


@platform_task(queue=Queue.DEFAULT, time_limit_s=30 * 60)
def compute_leaderboard(*, phase_id: int) -> None:
    services.snapshot_compute(phase_id=phase_id)
