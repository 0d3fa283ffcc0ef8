"""Resumable uploads: open one (after the phase, quota and size checks), append chunks at the confirmed
offset, and complete it into a stored image and a submission. The CLI and the browser both use these."""

from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from api.models import Upload
from benchmarks.models import Phase
from submissions import image_check, intake
from submissions.models import AlgorithmImage, Submission
from teams.models import Team

READ_BYTES = 1 << 20


class OffsetMismatch(Exception):
    """A chunk did not start where the server's copy ends; `offset` says where it does."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def part_path(upload: Upload) -> Path:
    return Path(settings.DATA_ROOT) / "uploads" / f"{upload.id}.part"


def upload_expires_at(upload: Upload):
    return upload.updated_at + timedelta(hours=settings.RETENTION_UPLOAD_HOURS)


def upload_open(*, team: Team, phase: Phase, algorithm: str, size: int) -> Upload:
    """Refuse before a byte arrives (phase closed, quota used, too large, no name); else make an empty part."""
    intake.submission_precheck(team=team, phase=phase, declared_size=size)
    if not algorithm.strip():
        raise intake.SubmissionRefused("Name the algorithm (for example --algorithm my-unet).")
    upload = Upload.objects.create(team=team, phase=phase, algorithm=algorithm.strip(), size_bytes=size)
    path = part_path(upload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return upload


def upload_append(*, upload_id, team: Team, start: int, length: int, total: int, stream: BinaryIO) -> Upload:
    """Write `length` bytes from `stream` at `start`, which must be the confirmed offset.

    The row lock serialises two PUTs of one upload. A chunk that arrives short (the connection dropped) is
    cut off again, so the offset only ever moves past bytes that fully arrived.
    """
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload_id, team=team)
        if upload.state != Upload.State.RECEIVING:
            raise OffsetMismatch("This upload is already complete; open a new one to send another image.",
                                 upload.received_bytes)
        if total != upload.size_bytes:
            raise intake.SubmissionRefused(
                f"Content-Range says the file is {total} bytes, but the upload was opened for {upload.size_bytes}."
            )
        if start != upload.received_bytes:
            raise OffsetMismatch(
                f"This chunk starts at byte {start}, but the server holds {upload.received_bytes} bytes. "
                f"Send from byte {upload.received_bytes}.", upload.received_bytes,
            )
        if start + length > upload.size_bytes:
            raise intake.SubmissionRefused("This chunk runs past the end of the declared size.")
        path = part_path(upload)
        received = 0
        with open(path, "r+b") as part:
            part.seek(start)
            part.truncate()
            while received < length and (chunk := stream.read(min(READ_BYTES, length - received))):
                part.write(chunk)
                received += len(chunk)
            if received != length:
                part.truncate(start)
                raise intake.SubmissionRefused(
                    f"The chunk was cut short: {received} of {length} bytes arrived. Send it again from byte {start}."
                )
        upload.received_bytes = start + length
        upload.save(update_fields=["received_bytes", "updated_at"])
    return upload


def upload_complete(*, upload_id, team: Team) -> Submission:
    """Hash the whole tar, store it as the team's image (DATA_ROOT/images/<sha256>.tar) and submit it."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().select_related("phase").get(pk=upload_id, team=team)
        if upload.state == Upload.State.COMPLETE and upload.submission_id:
            return upload.submission  # a repeated `complete` (the answer was lost) gives the same submission
        if upload.received_bytes != upload.size_bytes:
            raise OffsetMismatch(
                f"The server holds {upload.received_bytes} of {upload.size_bytes} bytes; send the rest first.",
                upload.received_bytes,
            )
        path = part_path(upload)
        if not path.exists() or path.stat().st_size != upload.size_bytes:
            raise intake.SubmissionRefused("The uploaded bytes are gone (expired?). Open a new upload and send it again.")
        image = _image_from_part(team=team, path=path, size=upload.size_bytes)
        submission = intake.submission_create(team=team, phase=upload.phase, algorithm=upload.algorithm, image=image)
        upload.state, upload.submission = Upload.State.COMPLETE, submission
        upload.save(update_fields=["state", "submission", "updated_at"])
    return submission


def _image_from_part(*, team: Team, path: Path, size: int) -> AlgorithmImage:
    """What `intake.image_store` does for a streamed body, for a tar already on disk (moved, not copied)."""
    if size > settings.MAX_IMAGE_UPLOAD_BYTES:
        raise intake.SubmissionRefused(
            f"The upload exceeds the {image_check.human_size(settings.MAX_IMAGE_UPLOAD_BYTES)} image limit."
        )
    digest = hashlib.sha256()
    with open(path, "rb") as part:
        while chunk := part.read(READ_BYTES):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    images_dir = Path(settings.DATA_ROOT) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    final = images_dir / f"{sha256}.tar"
    shutil.move(path, final)
    image, _ = AlgorithmImage.objects.get_or_create(
        team=team, sha256=sha256, defaults={"size_bytes": size, "tar_path": str(final.relative_to(settings.DATA_ROOT))}
    )
    return image


def quota(*, team: Team, phase: Phase) -> dict:
    """What the team may still send to the phase: shown before an upload starts."""
    used, quota = intake.submissions_used(team=team, phase=phase), phase.quota_for(team)
    return {
        "phase": phase.slug,
        "is_open": phase.is_open,
        "submissions_per_day": quota,
        "used_last_24h": used,
        "remaining": max(0, quota - used),
        "max_upload_bytes": settings.MAX_IMAGE_UPLOAD_BYTES,
    }


def upload_expired(upload: Upload) -> bool:
    return upload.state == Upload.State.RECEIVING and upload_expires_at(upload) < timezone.now()


def uploads_expire() -> int:
    """Remove uploads still receiving after RETENTION_UPLOAD_HOURS without a byte (their rows and `.part` files).

    A client that comes back later is told the upload is gone and starts a new one.
    """
    cutoff = timezone.now() - timedelta(hours=settings.RETENTION_UPLOAD_HOURS)
    removed = 0
    for upload in Upload.objects.filter(state=Upload.State.RECEIVING, updated_at__lt=cutoff):
        part_path(upload).unlink(missing_ok=True)
        upload.delete()
        removed += 1
    return removed

