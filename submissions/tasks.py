"""Celery tasks of a submission's life: each wraps one stage function and takes the id it names.

Callers use the task objects (`tasks.run_job.delay(job_id=...)`), never names in strings. Each stage
function holds its task's one catch-all: an unexpected exception becomes a platform error with a retry.
"""

import logging

from celery.signals import worker_process_init, worker_ready

from submissions import inference, intake, progress, retention, scoring, sweep
from touchstone_site.celery import Queue, platform_task

log = logging.getLogger(__name__)


@platform_task(queue=Queue.INFERENCE, time_limit_s=30 * 60)
def validate_submission(*, submission_id: int) -> None:
    sweep.database_ready()
    try:
        intake.submission_validate(submission_id=submission_id)
    except Exception as error:  # noqa: BLE001 - the one catch-all: never leave a submission VALIDATING
        log.exception("submission %s: validation failed on the platform's side", submission_id)
        sweep.database_ready()
        progress.validation_retry(submission_id=submission_id, error=error)


# The sandbox enforces the phase's wall clock on the container; Celery's hard limit, set per message from
# the phase's limit for this shard plus an allowance for image load and collection, is the backstop.
@platform_task(
    queue=Queue.INFERENCE, time_limit_s=None,
    message_time_limit=lambda job_id: inference.job_message_time_limit_s(job_id=job_id),
)
def run_job(*, job_id: int) -> None:
    inference.job_run(job_id=job_id)


@platform_task(queue=Queue.SCORING, time_limit_s=2 * 60 * 60)
def score_job(*, job_id: int) -> None:
    scoring.job_score(job_id=job_id)


@platform_task(queue=Queue.CONTROL, time_limit_s=10 * 60)
def sweep_states() -> dict[str, int]:
    return sweep.sweep()


@platform_task(queue=Queue.CONTROL, time_limit_s=60 * 60)
def cleanup() -> dict[str, int]:
    return retention.shared_cleanup()


@worker_ready.connect
def reap_containers_at_start(sender=None, **_) -> None:
    """A worker that starts after a crash removes the containers its predecessor left (no live lease owns them)."""
    queues = {queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if queues and Queue.INFERENCE.value not in queues:
        return
    try:
        import docker

        sweep.containers_reap(client=docker.from_env(timeout=60))
    except Exception:  # noqa: BLE001 - no engine here yet: the reap before each claim catches up
        log.exception("could not reap containers at worker start")


@worker_process_init.connect
def reap_containers_periodically(**_) -> None:
    """Each worker process reaps its engine's orphaned containers between (and during) its tasks."""
    sweep.reaper_start()
