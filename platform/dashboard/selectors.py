"""What the organizers' dashboard reads: the broker's queues, the workers, jobs now and over time."""

from __future__ import annotations

import statistics as stats
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from evaluator.choices import ExitReason
from submissions.models import Job, Submission
from touchstone_site.celery import Queue, app

TEAM_SIDE = {
    ExitReason.CANNOT_START, ExitReason.CRASHED, ExitReason.TIMED_OUT, ExitReason.OUT_OF_MEMORY,
    ExitReason.TOO_MANY_PROCESSES, ExitReason.OUTPUT_TOO_LARGE, ExitReason.BAD_OUTPUT,
}


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per Celery queue: LLEN of each queue's list on the Redis broker (None: not readable)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return {queue.value: None for queue in Queue}
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return {queue.value: int(client.llen(queue.value)) for queue in Queue}
    except redis.RedisError:
        return {queue.value: None for queue in Queue}
    finally:
        client.close()


def workers(timeout_s: float = 1.0) -> list[dict[str, Any]]:
    """Workers answering `celery inspect` within the timeout, with the tasks each runs (and for how long)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return []
    inspector = app.control.inspect(timeout=timeout_s)
    try:
        active = inspector.active() or {}
        queues = inspector.active_queues() or {}
    except Exception:  # broker unreachable: the page shows no workers and says so
        return []
    now = timezone.now().timestamp()
    found = []
    for name in sorted(set(active) | set(queues)):
        tasks = [
            {
                "task": task.get("name", ""),
                "kwargs": task.get("kwargs", {}),
                "running_s": now - task["time_start"] if task.get("time_start") else None,
            }
            for task in active.get(name, [])
        ]
        found.append({"name": name, "queues": [q["name"] for q in queues.get(name, [])], "tasks": tasks})
    return found


def jobs_by_state() -> list[dict[str, Any]]:
    """Per phase: how many jobs are in each state."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for phase, state, n in Job.objects.values_list("submission__phase__slug", "state").annotate(n=Count("pk")):
        counts[phase][state] = n
    return [
        {"phase": phase, "states": {state.value: counts[phase].get(state.value, 0) for state in Job.State}}
        for phase in sorted(counts)
    ]


def submissions_waiting() -> list[Submission]:
    return list(
        Submission.objects.exclude(state__in=Submission.FINAL_STATES)
        .select_related("team", "phase")
        .order_by("created_at")[:100]
    )


def finished_per_hour(*, hours: int = 48) -> list[dict[str, Any]]:
    """Jobs ended per hour: succeeded, failed on the team's side, failed on the platform's side, cancelled."""
    since = timezone.now() - timedelta(hours=hours)
    rows = (
        Job.objects.filter(finished_at__gte=since, state__in=Job.FINAL_STATES)
        .annotate(hour=TruncHour("finished_at"))
        .values_list("hour", "state", "exit_reason")
        .annotate(n=Count("pk"))
    )
    buckets: dict[Any, Counter] = defaultdict(Counter)
    for hour, state, exit_reason, n in rows:
        buckets[hour][outcome_category(state, exit_reason)] += n
    return [{"hour": hour, **buckets[hour]} for hour in sorted(buckets)]


def outcome_category(state: str, exit_reason: str) -> str:
    if state == Job.State.SUCCEEDED:
        return "succeeded"
    if state == Job.State.CANCELLED or exit_reason == ExitReason.CANCELLED:
        return "cancelled"
    return "team_side" if exit_reason in TEAM_SIDE else "platform_side"


def compute_hours() -> dict[str, Any]:
    """Container hours per phase and team (GPU phases count GPU-hours, others CPU-hours: cpus × wall time),
    and the median job wall time split into waiting, running and scoring."""
    jobs = Job.objects.filter(started_at__isnull=False, ran_at__isnull=False).values_list(
        "submission__phase__slug", "submission__phase__gpu", "submission__phase__cpus", "submission__team__name",
        "queued_at", "started_at", "ran_at", "finished_at",
    )
    per_phase: dict[str, dict[str, float]] = defaultdict(lambda: {"gpu_hours": 0.0, "cpu_hours": 0.0})
    per_team: dict[str, dict[str, float]] = defaultdict(lambda: {"gpu_hours": 0.0, "cpu_hours": 0.0})
    waits, runs, scores = [], [], []
    for phase, gpu, cpus, team, queued_at, started_at, ran_at, finished_at in jobs:
        run_h = (ran_at - started_at).total_seconds() / 3600
        key = "gpu_hours" if gpu else "cpu_hours"
        amount = run_h if gpu else run_h * cpus
        per_phase[phase][key] += amount
        per_team[team][key] += amount
        runs.append(run_h * 3600)
        if queued_at:
            waits.append((started_at - queued_at).total_seconds())
        if finished_at:
            scores.append((finished_at - ran_at).total_seconds())
    return {
        "per_phase": dict(per_phase),
        "per_team": dict(per_team),
        "median_s": {
            "waiting": stats.median(waits) if waits else None,
            "running": stats.median(runs) if runs else None,
            "scoring": stats.median(scores) if scores else None,
        },
    }
