"""The Celery app, its queues, and the one decorator every platform task uses.

Queues: `inference` (GPU hosts: validate images, run containers), `scoring` (CPU: score cases),
`default` (leaderboard snapshots), `control` (the beat's sweep and cleanup, on a small worker of their own
so they never wait behind hours-long tasks). Messages carry ids only; PostgreSQL holds the state.
"""

import enum
import os
from collections.abc import Callable

import kombu
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "touchstone_site.settings")


class Queue(enum.StrEnum):
    INFERENCE = "inference"
    SCORING = "scoring"
    DEFAULT = "default"
    CONTROL = "control"


app = Celery("touchstone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [kombu.Queue(queue.value) for queue in Queue]
app.conf.task_default_queue = Queue.DEFAULT.value


def route_by_declared_queue(name, args, kwargs, options, task=None, **_):
    """Route a task to the queue its `platform_task` declaration names (beat and `send_task` included)."""
    queue = getattr(task, "platform_queue", None) or getattr(app.tasks.get(name), "platform_queue", None)
    return {"queue": queue} if queue else None


app.conf.task_routes = (route_by_declared_queue,)

# The beat schedule (sweep, cleanup) is CELERY_BEAT_SCHEDULE in settings.py: its periods are settings.
app.autodiscover_tasks(["submissions", "leaderboards", "benchmarks"])


def soft_limit(time_limit_s: int) -> int:
    """The soft limit comes a minute before the hard one, so a task can still write why it stopped."""
    return max(time_limit_s - 60, time_limit_s // 2)


def platform_task(*, queue: Queue, time_limit_s: int | None, message_time_limit: Callable[..., int] | None = None):
    """Register a platform task: acks late, re-queued if its worker dies, routed to `queue`, time-limited.

    Every platform task goes through here (a lint rule forbids a bare `shared_task`), so none forgets the
    delivery guarantees it relies on. A task takes keyword ids only (`job_id=`, `submission_id=`,
    `phase_id=`). `message_time_limit(**kwargs)` gives a limit per message, computed when it is sent (a
    job's limit follows its phase and number of cases), for tasks whose length has no fixed bound.
    """

    def decorate(function):
        limits = {}
        if time_limit_s is not None:
            limits = {"time_limit": time_limit_s, "soft_time_limit": soft_limit(time_limit_s)}
        options = {}
        if message_time_limit is not None:
            options["base"] = _per_message_limit_task(message_time_limit)
        return app.task(
            name=f"touchstone.{function.__name__}",
            platform_queue=queue.value,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            **limits,
            **options,
        )(function)

    return decorate


def _per_message_limit_task(message_time_limit: Callable[..., int]) -> type:
    class PerMessageLimitTask(app.Task):
        def apply_async(self, args=None, kwargs=None, **options):
            if "time_limit" not in options and not app.conf.task_always_eager:
                limit = message_time_limit(**(kwargs or {}))
                options.update(time_limit=limit, soft_time_limit=soft_limit(limit))
            return super().apply_async(args, kwargs, **options)

    return PerMessageLimitTask
