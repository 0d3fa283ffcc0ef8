"""Celery tasks of benchmarks: building each hidden reference's scoring cache after import."""

from benchmarks import services
from touchstone_site.celery import Queue, platform_task


# On the scoring queue: it is the scorer's work done ahead of time, on the hosts that hold DATA_ROOT.
@platform_task(queue=Queue.SCORING, time_limit_s=15 * 60)
def build_reference_cache(*, case_pk: int) -> None:
    services.case_reference_cache_build(case_pk=case_pk)
