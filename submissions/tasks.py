"""Celery tasks of a submission's life: each wraps one stage function and takes the id it names.

Callers use the task objects (`tasks.run_job.delay(job_id=...)`), never names in strings.
"""

from submissions import inference, intake, scoring
from touchstone_site.celery import Queue, platform_task


@platform_task(queue=Queue.INFERENCE, time_limit_s=30 * 60)
def validate_submission(*, submission_id: int) -> None:
    intake.submission_validate(submission_id=submission_id)


# No Celery time limit: the sandbox enforces the phase's own wall clock on the container and stops it.
@platform_task(queue=Queue.INFERENCE, time_limit_s=None)
def run_job(*, job_id: int) -> None:
    inference.job_run(job_id=job_id)


@platform_task(queue=Queue.SCORING, time_limit_s=2 * 60 * 60)
def score_job(*, job_id: int) -> None:
    scoring.job_score(job_id=job_id)


@platform_task(queue=Queue.DEFAULT, time_limit_s=10 * 60)
def requeue_stale_jobs() -> int:
    return inference.jobs_requeue_stale()
