"""The resumable upload protocol (the CLI's `submit` and the portal's upload page both speak it).

    POST /api/v1/uploads/                {phase, algorithm, size} → 201 {id, offset: 0, chunk_size, ...}
    PUT  /api/v1/uploads/<id>/           body: bytes, Content-Range: bytes START-END/TOTAL → 200 {offset}
                                         a chunk not starting at the server's offset → 409 {detail, offset}
    GET  /api/v1/uploads/<id>/           → {offset, ...}: where to resume after a dropped connection
    POST /api/v1/uploads/<id>/complete/  → 201: the submission
"""

import re

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes, throttle_classes
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response

from api import serializers as shapes
from api import services
from api.models import Upload
from api.throttling import TokenRateThrottle, UploadChunkThrottle
from api.views import submission_dict
from benchmarks.models import Phase
from submissions import intake

CHUNK_SIZE = 8 * 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")

ERRORS = {
    400: OpenApiResponse(shapes.ErrorSerializer, description="Refused: the detail says why and what to do."),
    401: OpenApiResponse(shapes.ErrorSerializer, description="No token, or an unknown, revoked or expired one."),
    403: OpenApiResponse(shapes.ErrorSerializer, description="The token's scope is read-only."),
    404: OpenApiResponse(shapes.ErrorSerializer, description="No such upload of your team."),
    429: OpenApiResponse(shapes.ErrorSerializer, description="Too many requests with this token."),
}


class RawChunkParser(BaseParser):
    """Leaves the body unread: the service streams it to disk."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):  # pragma: no cover - never asked to parse
        return {}


def upload_dict(request, upload: Upload) -> dict:
    return {
        "id": str(upload.id),
        "phase": upload.phase.slug,
        "algorithm": upload.algorithm,
        "size": upload.size_bytes,
        "offset": upload.received_bytes,
        "chunk_size": CHUNK_SIZE,
        "state": upload.state,
        "submission": upload.submission_id,
        "url": request.build_absolute_uri(reverse("api-upload", args=[upload.id])),
        "expires_at": services.upload_expires_at(upload).isoformat(),
    }


def _refused(refusal: Exception) -> Response:
    return Response({"detail": str(refusal)}, status=status.HTTP_400_BAD_REQUEST)


@extend_schema(
    summary="Open a resumable upload",
    description="Checks the phase is open, the team's quota and the size before any byte is sent.",
    request=shapes.UploadCreateSerializer,
    responses={201: shapes.UploadSerializer, **ERRORS},
    tags=["uploads"],
)
@api_view(["POST"])
@parser_classes([JSONParser])
def upload_create(request):
    body = shapes.UploadCreateSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    phase = Phase.objects.filter(slug=body.validated_data["phase"]).first()
    if phase is None:
        return _refused(Exception(f"There is no phase '{body.validated_data['phase']}'. See `touchstone phases`."))
    try:
        upload = services.upload_open(team=request.user.team, phase=phase, algorithm=body.validated_data["algorithm"],
                                      size=body.validated_data["size"])
    except intake.SubmissionRefused as refusal:
        return _refused(refusal)
    return Response(upload_dict(request, upload), status=status.HTTP_201_CREATED)


@extend_schema(
    methods=["GET"], summary="Where an upload stands (resume from `offset`)",
    responses={200: shapes.UploadSerializer, **ERRORS}, tags=["uploads"],
)
@extend_schema(
    methods=["PUT"],
    summary="Append one chunk at the confirmed offset",
    parameters=[OpenApiParameter("Content-Range", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
                                 description="bytes START-END/TOTAL (END inclusive); START must be the offset.")],
    request={"application/octet-stream": OpenApiTypes.BINARY},
    responses={200: shapes.UploadSerializer, 409: OpenApiResponse(shapes.UploadConflictSerializer,
               description="The chunk does not start at the server's offset: resume from `offset`."), **ERRORS},
    tags=["uploads"],
)
@api_view(["GET", "PUT"])
@parser_classes([RawChunkParser])
@throttle_classes([UploadChunkThrottle])
def upload_detail(request, upload_id):
    upload = get_object_or_404(Upload.objects.select_related("phase"), pk=upload_id, team=request.user.team)
    if request.method == "GET":
        return Response(upload_dict(request, upload))
    match = CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
    if not match:
        return _refused(Exception("Send each chunk with a header 'Content-Range: bytes START-END/TOTAL'."))
    start, end, total = (int(group) for group in match.groups())
    length = end - start + 1
    declared = request.headers.get("Content-Length", "")
    if end < start or length > CHUNK_SIZE or not declared.isdigit() or int(declared) != length:
        return _refused(Exception(
            f"A chunk must be 1 to {CHUNK_SIZE} bytes, and its Content-Length must match its Content-Range."
        ))
    try:
        upload = services.upload_append(upload_id=upload.pk, team=request.user.team, start=start, length=length,
                                        total=total, stream=request._request)
    except services.OffsetMismatch as conflict:
        return Response({"detail": str(conflict), "offset": conflict.offset}, status=status.HTTP_409_CONFLICT)
    except intake.SubmissionRefused as refusal:
        return _refused(refusal)
    return Response(upload_dict(request, upload))


@extend_schema(
    summary="Finish an upload: store the image and create the submission",
    request=None,
    responses={201: shapes.SubmissionDetailSerializer, 409: OpenApiResponse(shapes.UploadConflictSerializer,
               description="Not every byte has arrived: send from `offset`."), **ERRORS},
    tags=["uploads"],
)
@api_view(["POST"])
@throttle_classes([TokenRateThrottle])
def upload_complete(request, upload_id):
    upload = get_object_or_404(Upload, pk=upload_id, team=request.user.team)
    try:
        submission = services.upload_complete(upload_id=upload.pk, team=request.user.team)
    except services.OffsetMismatch as conflict:
        return Response({"detail": str(conflict), "offset": conflict.offset}, status=status.HTTP_409_CONFLICT)
    except intake.SubmissionRefused as refusal:
        return _refused(refusal)
    submission.refresh_from_db()
    return Response(submission_dict(request, submission, detail=True), status=status.HTTP_201_CREATED)
