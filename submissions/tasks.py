"""Celery tasks of a submission's life: thin wrappers that pass one id to a service."""

from submissions import services
from touchstone_site.celery import platform_task


@platform_task(name="validate_submission", queue="inference")
def validate_submission(*, object_id: int) -> None:
    services.submission_validate(submission_id=object_id)


@platform_task(name="run_job", queue="inference")
def run_job(*, object_id: int) -> None:
    services.job_run(job_id=object_id)


@platform_task(name="score_job", queue="scoring")
def score_job(*, object_id: int) -> None:
    services.job_score(job_id=object_id)


@platform_task(name="requeue_stale_jobs", queue="default")
def requeue_stale_jobs() -> int:
    return services.jobs_requeue_stale()
