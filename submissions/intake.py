"""Intake: an uploaded image stored, a submission accepted within the phase's quota, the image checked, the jobs cut.

Every step reads its state from the database, checks it, acts, and writes with a compare-and-set, so a
redelivered or duplicated Celery message does nothing harmful.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from benchmarks.models import Case, Phase
from submissions import image_check, progress, sandbox, tasks
from submissions.models import AlgorithmImage, Job, Submission
from teams.models import Team


class SubmissionRefused(Exception):
    """The request cannot be accepted; the message tells the team what to do."""


def image_limits() -> image_check.ImageLimits:
    """The caps on one image, from the settings (TOUCHSTONE_IMAGE_MAX_*)."""
    return image_check.ImageLimits(
        max_layers=settings.IMAGE_MAX_LAYERS,
        max_compressed_bytes=settings.IMAGE_MAX_COMPRESSED_BYTES,
        max_unpacked_bytes=settings.IMAGE_MAX_UNPACKED_BYTES,
    )


def submissions_used(*, team: Team, phase: Phase) -> int:
    """The team's submissions to the phase in the last 24 hours; platform failures are not charged."""
    since = timezone.now() - timedelta(days=1)
    return (
        Submission.objects.filter(team=team, phase=phase, created_at__gte=since)
        .exclude(state=Submission.State.FAILED, failure_reason__startswith="Platform error")
        .count()
    )


def _check_open_and_quota(*, team: Team, phase: Phase) -> None:
    if not phase.is_open:
        raise SubmissionRefused(f"Phase '{phase.slug}' is closed for submissions.")
    quota = phase.quota_for(team)
    if submissions_used(team=team, phase=phase) >= quota:
        raise SubmissionRefused(
            f"Team '{team.slug}' has used its {quota} submissions to '{phase.slug}' "
            "in the last 24 hours. Try again later."
        )


def submission_precheck(*, team: Team, phase: Phase, declared_size: int | None) -> None:
    """Refuse an upload before a byte of it is stored: phase closed, quota used up, or declared too large.

    `submission_create` checks the phase and quota again under a lock (two uploads may race).
    """
    _check_open_and_quota(team=team, phase=phase)
    limit = settings.MAX_IMAGE_UPLOAD_BYTES
    if declared_size is not None and declared_size > limit:
        raise SubmissionRefused(
            f"The image is {image_check.human_size(declared_size)}; the limit is {image_check.human_size(limit)}. "
            "Make it smaller (a slimmer base image, fewer files) and save it again."
        )


def image_store(*, team: Team, stream: BinaryIO, declared_size: int | None = None) -> AlgorithmImage:
    """Stream an uploaded `docker save` tar to DATA_ROOT/images/<sha256>.tar, never holding it in memory."""
    limit = settings.MAX_IMAGE_UPLOAD_BYTES
    if declared_size is not None and declared_size > limit:
        raise SubmissionRefused(
            f"The image is {image_check.human_size(declared_size)}; the limit is {image_check.human_size(limit)}."
        )
    images_dir = Path(settings.DATA_ROOT) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=images_dir, prefix="upload-", suffix=".part", delete=False) as part:
        try:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise SubmissionRefused(f"The upload exceeds the {image_check.human_size(limit)} image limit.")
                digest.update(chunk)
                part.write(chunk)
        except BaseException:
            Path(part.name).unlink(missing_ok=True)
            raise
    if declared_size is not None and size != declared_size:
        Path(part.name).unlink(missing_ok=True)
        raise SubmissionRefused(f"The upload was cut short: {size} of {declared_size} bytes arrived. Try again.")
    if size == 0:
        Path(part.name).unlink(missing_ok=True)
        raise SubmissionRefused("The upload is empty. Send the output of `docker save IMAGE`.")
    sha256 = digest.hexdigest()
    final = images_dir / f"{sha256}.tar"
    shutil.move(part.name, final)
    image, _ = AlgorithmImage.objects.get_or_create(
        team=team, sha256=sha256, defaults={"size_bytes": size, "tar_path": str(final.relative_to(settings.DATA_ROOT))}
    )
    return image


def submission_create(*, team: Team, phase: Phase, algorithm: str, image: AlgorithmImage) -> Submission:
    """Accept a submission if the phase is open and the team is within its daily quota."""
    if not phase.is_open:
        raise SubmissionRefused(f"Phase '{phase.slug}' is closed for submissions.")
    if not algorithm.strip():
        raise SubmissionRefused("Name the algorithm (for example --algorithm my-unet).")
    if image.state == AlgorithmImage.State.INVALID:
        raise SubmissionRefused(f"This image was already refused: {image.error}")
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=team.pk)  # serialise quota checks of one team
        _check_open_and_quota(team=team, phase=phase)
        submission = Submission.objects.create(team=team, phase=phase, algorithm=algorithm.strip(), image=image)
        # robust: with the broker down the row is committed all the same and the caller gets its submission;
        # the sweep re-sends the validation of a submission left VALIDATING (the failure is logged).
        transaction.on_commit(lambda: tasks.validate_submission.delay(submission_id=submission.pk), robust=True)
    return submission


def submission_validate(*, submission_id: int, runner_override: sandbox.SandboxRunner | None = None) -> None:
    """Check the image's tar, load it untagged and tag it in the platform's namespace; then cut the jobs.

    A refused image is marked INVALID with the reason and the submission FAILED with it; nothing of it
    stays in Docker.
    """
    submission = Submission.objects.select_related("image", "phase", "team").get(pk=submission_id)
    if submission.state != Submission.State.VALIDATING:
        return
    image = submission.image
    if image.state != AlgorithmImage.State.READY:
        runner = runner_override or sandbox.SandboxRunner()
        try:
            image.docker_image_id = runner.load_image(
                Path(settings.DATA_ROOT) / image.tar_path,
                repository=image_check.submission_repository(submission.team.slug),
                limits=image_limits(),
            )
            image.state = AlgorithmImage.State.READY
            image.error = ""
        except sandbox.ImageRejected as error:
            image.state, image.error = AlgorithmImage.State.INVALID, str(error)
        image.save(update_fields=["docker_image_id", "state", "error"])
    if image.state == AlgorithmImage.State.INVALID:
        progress.submission_fail(submission_id=submission.pk, reason=f"The image was refused: {image.error}")
        return
    jobs_create(submission=submission)


def _canary_first(cases: list[Case], canary_size: int) -> list[Case]:
    """Order cases so the first `canary_size` come from as many sites as possible (round robin)."""
    by_site: dict[int, list[Case]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.case_id):
        by_site[case.site_id].append(case)
    queues = [by_site[site] for site in sorted(by_site)]
    ordered: list[Case] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    canary, rest = ordered[:canary_size], ordered[canary_size:]
    return canary + sorted(rest, key=lambda c: c.case_id)


def jobs_create(*, submission: Submission) -> list[Job]:
    phase = submission.phase
    cases = _canary_first(list(phase.cases.all()), phase.canary_size)
    if not cases:
        progress.submission_fail(submission_id=submission.pk, reason="Platform error: the phase has no cases.")
        return []
    shards = [cases[: phase.canary_size]]
    rest = cases[phase.canary_size :]
    shards += [rest[i : i + phase.shard_size] for i in range(0, len(rest), phase.shard_size)]
    with transaction.atomic():
        updated = Submission.objects.filter(pk=submission.pk, state=Submission.State.VALIDATING).update(
            state=Submission.State.QUEUED
        )
        if updated != 1:
            return []
        jobs = []
        for index, shard in enumerate(shards):
            job = Job.objects.create(
                submission=submission,
                index=index,
                is_canary=index == 0,
                state=Job.State.QUEUED if index == 0 else Job.State.PENDING,
                queued_at=timezone.now() if index == 0 else None,
            )
            job.cases.set(shard)
            jobs.append(job)
        canary_id = jobs[0].pk
        transaction.on_commit(lambda: tasks.run_job.delay(job_id=canary_id), robust=True)  # lost: the sweep re-sends it
    return jobs
