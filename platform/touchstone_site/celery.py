"""The Celery app, its queues, and the one decorator every platform task uses.

Queues: `inference` (GPU hosts: validate images, run containers), `scoring` (CPU: score cases),
`default` (leaderboard snapshots, housekeeping). Messages carry ids only; PostgreSQL holds the state.
"""

import enum
import os

import kombu
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "touchstone_site.settings")


class Queue(enum.StrEnum):
    INFERENCE = "inference"
    SCORING = "scoring"
    DEFAULT = "default"


app = Celery("touchstone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [kombu.Queue(queue.value) for queue in Queue]
app.conf.task_default_queue = Queue.DEFAULT.value


def route_by_declared_queue(name, args, kwargs, options, task=None, **_):
    """Route a task to the queue its `platform_task` declaration names (beat and `send_task` included)."""
    queue = getattr(task, "platform_queue", None) or getattr(app.tasks.get(name), "platform_queue", None)
    return {"queue": queue} if queue else None


app.conf.task_routes = (route_by_declared_queue,)
app.conf.beat_schedule = {
    "requeue-stale-jobs": {"task": "touchstone.requeue_stale_jobs", "schedule": 300.0},
}
app.autodiscover_tasks(["submissions", "leaderboards"])


def platform_task(*, queue: Queue, time_limit_s: int | None):
    """Register a platform task: acks late, re-queued if its worker dies, routed to `queue`, time-limited.

    Every platform task goes through here (a lint rule forbids a bare `shared_task`), so none forgets the
    delivery guarantees it relies on. The soft limit comes a minute before the hard one, so a task can
    still write why it stopped. A task takes keyword ids only (`job_id=`, `submission_id=`, `phase_id=`).
    """

    def decorate(function):
        limits = {}
        if time_limit_s is not None:
            limits = {"time_limit": time_limit_s, "soft_time_limit": max(time_limit_s - 60, time_limit_s // 2)}
        return app.task(
            name=f"touchstone.{function.__name__}",
            platform_queue=queue.value,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            **limits,
        )(function)

    return decorate
