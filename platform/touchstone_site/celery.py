"""The Celery app, its queues, and the one decorator every platform task uses.

Queues: `inference` (GPU hosts: validate images, run containers), `scoring` (CPU: score cases),
`default` (leaderboard snapshots, housekeeping). Messages carry ids only; PostgreSQL holds the state.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "touchstone_site.settings")

app = Celery("touchstone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("default"), Queue("inference"), Queue("scoring")]
app.conf.task_routes = {}  # filled by platform_task
app.conf.beat_schedule = {
    "requeue-stale-jobs": {"task": "touchstone.requeue_stale_jobs", "schedule": 300.0},
}
app.autodiscover_tasks(["submissions", "leaderboards"])


def platform_task(*, name: str, queue: str):
    """Register a task that takes one id: acks late, re-queued if its worker dies, routed to `queue`.

    Every platform task goes through here, so none forgets the delivery guarantees it relies on.
    """

    def decorate(function):
        app.conf.task_routes[f"touchstone.{name}"] = {"queue": queue}
        return app.task(
            name=f"touchstone.{name}",
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
        )(function)

    return decorate
