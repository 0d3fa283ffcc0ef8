"""Retention: what the platform removes once no live job needs it (`manage.py cleanup`; uploads daily by beat on
the control worker, images and job folders by each inference worker's reaper).

- Docker images of failed, cancelled and superseded submissions (the team has a later completed one in
  the phase), RETENTION_IMAGE_DAYS after their last submission ended. The tar stays: a rerun reloads it.
- Uploaded tars of refused images and tars no image row knows, and `.part` files of cut uploads, after
  RETENTION_UPLOAD_HOURS.
- Raw /input and /output folders of ended jobs, and the folders of their earlier attempts, after
  RETENTION_RAW_OUTPUT_HOURS; collected predictions after RETENTION_PREDICTIONS_DAYS (0: kept).

Nothing used by a submission that has not ended is touched. An attempt's folder goes through
`SandboxRunner.cleanup` first: a mounted /output is unmounted, never emptied in place and left mounted.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

import requests.exceptions
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from submissions import inference, sandbox
from submissions.models import AlgorithmImage, Job, Submission

log = logging.getLogger(__name__)


def cleanup(*, client=None) -> dict[str, int]:
    """Run every retention rule (`manage.py cleanup`, as root on an inference host); how many each removed."""
    return {**shared_cleanup(), **host_cleanup(client=client)}


def shared_cleanup() -> dict[str, int]:
    """The rules any host may run (the daily beat task, on the control worker): uploads in DATA_ROOT."""
    from api.services import uploads_expire  # the upload protocol's own rows and files

    return {"upload_files": upload_files_remove(), "unfinished_uploads": uploads_expire()}


def host_cleanup(*, client=None) -> dict[str, int]:
    """The rules of an inference host: images on its own engine, and job folders (written there as root).

    Run by each inference worker's reaper every RETENTION_HOST_INTERVAL_S; job folders live on the shared
    DATA_ROOT, so whichever host runs first removes them and the others find nothing to do.
    """
    return {"docker_images": docker_images_remove(client=client), "job_folders": job_folders_remove()}


def _images_in_use() -> set[int]:
    """Images a live submission or a team's current (latest completed) submission in a phase needs."""
    live = set(
        Submission.objects.exclude(state__in=Submission.FINAL_STATES).values_list("image_id", flat=True)
    )
    latest = Submission.objects.filter(state=Submission.State.COMPLETED).values("team", "phase").annotate(
        newest=Max("created_at")
    )
    current = set()
    for row in latest:
        current.update(
            Submission.objects.filter(
                team=row["team"], phase=row["phase"], state=Submission.State.COMPLETED, created_at=row["newest"]
            ).values_list("image_id", flat=True)
        )
    return live | current


def docker_images_remove(*, client=None) -> int:
    """Remove from this host's engine the images no live or current submission needs, past retention."""
    import docker
    import docker.errors

    cutoff = timezone.now() - timedelta(days=settings.RETENTION_IMAGE_DAYS)
    keep = _images_in_use()
    kept_ids = set(AlgorithmImage.objects.filter(pk__in=keep).values_list("docker_image_id", flat=True))
    candidates = (
        AlgorithmImage.objects.exclude(pk__in=keep).exclude(docker_image_id="").filter(created_at__lt=cutoff)
        .annotate(last_end=Max("submissions__completed_at"))
    )
    removed = 0
    try:
        client = client or docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:  # no engine here
        log.warning("no Docker engine here, so no image is removed on this host: %s", error)
        return 0
    for image in candidates:
        if image.docker_image_id in kept_ids or (image.last_end and image.last_end > cutoff):
            continue
        try:
            client.images.remove(image.docker_image_id, noprune=False)
            removed += 1
            log.info("removed Docker image %s (%s)", image.docker_image_id, image)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as error:  # in use by a container, or a conflict: next time
            log.warning("could not remove Docker image %s: %s", image.docker_image_id, error)
    return removed


def upload_files_remove() -> int:
    """Remove `.part` files, refused images' tars and tars no image row knows, past retention."""
    images_dir = Path(settings.DATA_ROOT) / "images"
    if not images_dir.is_dir():
        return 0
    cutoff_s = time.time() - settings.RETENTION_UPLOAD_HOURS * 3600
    known = {Path(path).name: state for path, state in AlgorithmImage.objects.values_list("tar_path", "state")}
    needed = {
        Path(path).name for path in AlgorithmImage.objects.filter(
            submissions__state__in=[s for s in Submission.State if s not in Submission.FINAL_STATES]
        ).values_list("tar_path", flat=True)
    }
    removed = 0
    for path in images_dir.iterdir():
        if not path.is_file() or path.stat().st_mtime > cutoff_s or path.name in needed:
            continue
        stale_part = path.name.endswith(".part")
        refused_or_unknown = path.suffix == ".tar" and known.get(path.name, AlgorithmImage.State.INVALID) == (
            AlgorithmImage.State.INVALID
        )
        if stale_part or refused_or_unknown:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def job_folders_remove() -> int:
    """Remove raw inputs/outputs and earlier attempts of ended jobs; predictions past their retention."""
    raw_cutoff = timezone.now() - timedelta(hours=settings.RETENTION_RAW_OUTPUT_HOURS)
    predictions_days = settings.RETENTION_PREDICTIONS_DAYS
    removed = 0
    ended = Job.objects.filter(state__in=Job.FINAL_STATES, finished_at__lt=raw_cutoff)
    for job in ended.iterator():
        folder = inference.job_jobs_dir(job)
        if not folder.is_dir():
            continue
        for attempt_dir in folder.glob("attempt-*"):
            raw = [attempt_dir / part for part in ("input", "output", sandbox.OUTPUT_IMAGE)
                   if (attempt_dir / part).exists()]
            try:
                if raw:
                    sandbox.SandboxRunner.cleanup(attempt_dir)
            except sandbox.PlatformError:  # still mounted: removing it now would empty it in place
                log.warning("could not unmount the /output of %s; the next run tries again", attempt_dir,
                            exc_info=True)
                continue
            if attempt_dir != inference.job_dir(job):
                removed += _remove_tree(attempt_dir)
                continue
            removed += len(raw)
            old = predictions_days and job.finished_at < timezone.now() - timedelta(days=predictions_days)
            if old and (attempt_dir / "predictions").exists():
                removed += _remove_tree(attempt_dir / "predictions")
    return removed


def _remove_tree(path: Path) -> int:
    """1 if `path` is gone, else 0 with a warning (e.g. written by root where this process is not)."""
    try:
        shutil.rmtree(path)
    except OSError as error:
        log.warning("could not remove %s: %s; the next run tries again", path, error)
        return 0
    return 1
