"""/healthz: is this deployment able to work? For the proxy, the container healthchecks and monitoring.

JSON, 200 when healthy and 503 otherwise. Checks the database (a query), the broker (a Redis ping) and,
unless `?scope=web`, the Celery workers: one broadcast asks every worker which queues it consumes, with a
short timeout, and each of `inference`, `scoring` and `control` needs at least one worker that answers.
Worker names (`<queue>@<host>`) are returned only to staff; everyone else sees counts per queue.
"""

import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from touchstone_site.celery import Queue, app

# Queues without a worker stall submissions: each needs one (default is served by the scoring workers).
REQUIRED_QUEUES = (Queue.INFERENCE, Queue.SCORING, Queue.CONTROL)
WORKER_REPLY_TIMEOUT_S = 1.5


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure is "unhealthy", with its reason
        return f"{type(error).__name__}: {error}".strip()[:300]
    return None


def check_broker() -> str | None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None  # the embedded demo: no broker, tasks run in the web process
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=3)
    except Exception as error:
        return f"{type(error).__name__}: {error}".strip()[:300]
    return None


def worker_queues() -> dict[str, list[str]]:
    """Worker name → queues it consumes, for every worker that answered within the timeout."""
    replies = app.control.inspect(timeout=WORKER_REPLY_TIMEOUT_S).active_queues() or {}
    return {worker: sorted(queue["name"] for queue in queues) for worker, queues in replies.items()}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    checks: dict[str, dict] = {}
    database_error = check_database()
    checks["database"] = {"ok": database_error is None, **({"error": database_error} if database_error else {})}
    broker_error = check_broker()
    checks["broker"] = {"ok": broker_error is None, **({"error": broker_error} if broker_error else {})}
    if request.GET.get("scope") != "web" and not settings.CELERY_TASK_ALWAYS_EAGER:
        workers: dict[str, list[str]] = {}
        if broker_error is None:
            try:
                workers = worker_queues()
            except Exception as error:
                checks["workers"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        if "workers" not in checks:
            per_queue = {queue.value: sum(queue.value in queues for queues in workers.values()) for queue in Queue}
            missing = [queue.value for queue in REQUIRED_QUEUES if not per_queue[queue.value]]
            checks["workers"] = {"ok": not missing, "per_queue": per_queue}
            if missing:
                checks["workers"]["error"] = f"no worker answered for queue(s): {', '.join(missing)}"
            if request.user.is_authenticated and request.user.is_staff:
                checks["workers"]["names"] = workers
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "unhealthy", "checks": checks,
            "duration_ms": round((time.monotonic() - started) * 1000)}
    return JsonResponse(body, status=200 if healthy else 503)
