"""REST API for teams and the CLI. Views parse input, call one service or selector, and render."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from api import serializers as shapes
from benchmarks.models import Phase
from leaderboards import exports, visibility
from submissions import intake, selectors
from submissions.models import Submission


def _phase_dict(phase: Phase) -> dict:
    return {
        "slug": phase.slug,
        "name": phase.name,
        "benchmark": phase.benchmark.slug,
        "is_open": phase.is_open,
        "cases": phase.cases.count(),
        "time_limit_per_case_s": phase.time_limit_per_case_s,
        "time_limit_overhead_s": phase.time_limit_overhead_s,
        "memory_mb": phase.memory_mb,
        "cpus": phase.cpus,
        "gpu": phase.gpu,
        "submissions_per_day": phase.submissions_per_day,
        "show_logs": phase.show_logs,
        "sample_cases": phase.sample_cases.count(),
        "max_upload_bytes": settings.MAX_IMAGE_UPLOAD_BYTES,
        "labels": {str(o.label): o.name for o in phase.benchmark.organs.all()},
    }


def paginated(request, items, render) -> Response:
    """One page of a list: {count, next, previous, results}; `?page=N`, `?page_size=M` (at most 200)."""
    paginator = Pager()
    page = paginator.paginate_queryset(items, request)
    return paginator.get_paginated_response([render(item) for item in page])


class Pager(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _errors(*codes: int) -> dict:
    words = {400: "Refused: the detail says why and what to do.", 401: "No token, or an unknown, revoked or expired one.",
             403: "Not allowed (read-only token, or the phase does not share this).",
             404: "No such object, or not your team's.", 409: "Not yet: the detail says when.",
             429: "Too many requests with this token: wait and retry."}
    return {code: OpenApiResponse(shapes.ErrorSerializer, description=words[code]) for code in (401, 429, *codes)}


def _submission_dict(request, submission: Submission, *, detail: bool) -> dict:
    data = {
        "id": submission.pk,
        "phase": submission.phase.slug,
        "team": submission.team.slug,
        "algorithm": submission.algorithm,
        "state": submission.state,
        "state_label": submission.get_state_display(),
        "failure_reason": submission.failure_reason,
        "image_sha256": submission.image.sha256,
        "created_at": submission.created_at.isoformat(),
        "completed_at": submission.completed_at.isoformat() if submission.completed_at else None,
        "url": request.build_absolute_uri(reverse("submission-page", args=[submission.pk])),
    }
    if detail:
        data["jobs"] = selectors.job_summaries(
            submission=submission, include_logs=False, include_last_line=submission.phase.show_logs
        )
        if submission.state == Submission.State.COMPLETED:
            data["results"] = selectors.results_summary(submission=submission)
    return data


def _own_submission(request, submission_id: int) -> Submission:
    return get_object_or_404(
        Submission.objects.select_related("phase", "team", "image"), pk=submission_id, team=request.user.team
    )


submission_dict = _submission_dict


@csrf_exempt  # it changes nothing; a POST to a wrong path gets this 404, not a CSRF page
def api_not_found(request, *args, **kwargs):
    """A plain Django view: every unknown /api/v1/ path answers JSON, never the HTML 404 page."""
    return JsonResponse({"detail": f"No API endpoint at {request.path}. See /api/v1/docs/."}, status=404)


@extend_schema(summary="Phases you can submit to", responses={200: shapes.page_of(shapes.PhaseSerializer), **_errors(404)},
               tags=["phases"])
@api_view(["GET"])
def phases(request):
    return paginated(request, Phase.objects.select_related("benchmark").order_by("slug"), _phase_dict)


@extend_schema(
    methods=["GET"], summary="Your team's submissions, newest first",
    responses={200: shapes.page_of(shapes.SubmissionSerializer), **_errors(404)}, tags=["submissions"],
)
@extend_schema(
    methods=["POST"],
    summary="Submit an image in one request (the body is the `docker save` tar)",
    description="For large images prefer the resumable /uploads/ protocol.",
    parameters=[OpenApiParameter("X-Touchstone-Algorithm", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                 description="The name shown on the leaderboard.")],
    request={"application/x-tar": OpenApiTypes.BINARY},
    responses={201: shapes.SubmissionDetailSerializer, **_errors(400, 403, 404)}, tags=["submissions"],
)
@api_view(["GET", "POST"])
def submissions(request, slug: str | None = None):
    """GET: the team's submissions. POST to /phases/<slug>/submissions/: upload a `docker save` tar as the body."""
    if request.method == "GET":
        mine = Submission.objects.filter(team=request.user.team).select_related("phase", "team", "image")
        if slug is not None:
            mine = mine.filter(phase=get_object_or_404(Phase, slug=slug))
        return paginated(request, mine.order_by("-created_at", "-pk"),
                         lambda s: _submission_dict(request, s, detail=False))
    if slug is None:
        raise NotFound("POST the image to /api/v1/phases/<phase>/submissions/.")
    phase = get_object_or_404(Phase, slug=slug)
    algorithm = request.headers.get("X-Touchstone-Algorithm") or request.query_params.get("algorithm", "")
    length = request.headers.get("Content-Length")
    declared = int(length) if length and length.isdigit() else None
    if not declared:
        problem = "is empty" if declared == 0 else "has no Content-Length (chunked uploads are not accepted)"
        return Response({"detail": f"The upload {problem}. Send the output of `docker save IMAGE` as the body."},
                        status=status.HTTP_400_BAD_REQUEST)
    if request.content_type not in ("application/x-tar", "application/octet-stream"):
        raise ValidationError(
            {"detail": "Send the `docker save` tar as the request body with Content-Type: application/x-tar."}
        )
    try:
        # Phase, quota and declared size are checked before a byte of the body is stored.
        intake.submission_precheck(team=request.user.team, phase=phase, declared_size=declared)
        image = intake.image_store(team=request.user.team, stream=request._request, declared_size=declared)
        submission = intake.submission_create(team=request.user.team, phase=phase, algorithm=algorithm, image=image)
    except intake.SubmissionRefused as refusal:
        return Response({"detail": str(refusal)}, status=status.HTTP_400_BAD_REQUEST)
    submission.refresh_from_db()
    return Response(_submission_dict(request, submission, detail=True), status=status.HTTP_201_CREATED)


@extend_schema(summary="A submission, job by job, with results once completed", operation_id="submission_detail",
               responses={200: shapes.SubmissionDetailSerializer, **_errors(404)}, tags=["submissions"])
@api_view(["GET"])
def submission_detail(request, submission_id: int):
    return Response(_submission_dict(request, _own_submission(request, submission_id), detail=True))


@extend_schema(summary="Per case and organ scores of a completed submission",
               responses={200: shapes.SubmissionResultsSerializer, **_errors(404, 409)}, tags=["submissions"])
@api_view(["GET"])
def submission_results(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    if submission.state != Submission.State.COMPLETED:
        return Response(
            {"detail": f"Submission {submission.pk} is {submission.get_state_display().lower()}; results come when it completes."},
            status=status.HTTP_409_CONFLICT,
        )
    if not visibility.can_see_case_results(visibility.viewer_for(request), submission):
        return Response(
            {"detail": f"Phase '{submission.phase.slug}' does not share per-case results with teams; "
                       "the headline and per-organ results are in the submission's detail."},
            status=status.HTTP_403_FORBIDDEN,
        )
    return Response({"id": submission.pk, "cases": selectors.case_rows(submission=submission)})


@extend_schema(summary="Container log tails, where the phase shares them",
               responses={200: shapes.SubmissionLogsSerializer, **_errors(403, 404)}, tags=["submissions"])
@api_view(["GET"])
def submission_logs(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    if not submission.phase.show_logs:
        return Response(
            {"detail": f"Phase '{submission.phase.slug}' does not share container logs with teams."},
            status=status.HTTP_403_FORBIDDEN,
        )
    return Response({"id": submission.pk, "jobs": selectors.job_summaries(submission=submission, include_logs=True)})


@extend_schema(
    summary="A phase's ranking",
    parameters=[OpenApiParameter("statistics", OpenApiTypes.STR, enum=["full"],
                                 description="`full` adds the whole snapshot (every statistic).")],
    responses={200: shapes.LeaderboardSerializer, **_errors(404)}, tags=["phases"],
)
@api_view(["GET"])
def leaderboard(request, slug: str):
    """The ranked rows the caller may see, with headline CIs and rank ranges; `?statistics=full` adds the whole
    snapshot (`Snapshot.to_json()`: the documented JSON of `evaluator.stats.snapshot`, with its schema version)
    where the caller sees the whole board. An embargoed or private board shows a team only its own rows."""
    phase = get_object_or_404(Phase, slug=slug)
    board = visibility.board_for(visibility.viewer_for(request), phase)
    snapshot, statistics = board.snapshot, board.statistics
    body = {
        "phase": phase.slug,
        "visibility": phase.leaderboard_visibility,
        "scope": board.scope.value,
        "publication": exports.publication_record(board),
        "computed_at": snapshot.created_at.isoformat() if snapshot and board.rows else None,
        "parameters": statistics.parameters.to_json() if statistics else {},
        "rows": exports.leaderboard_rows(board),
        "url": request.build_absolute_uri(reverse("leaderboard-page", args=[phase.slug])),
    }
    if request.query_params.get("statistics") == "full":
        body["statistics"] = statistics.to_json() if statistics else {}
    return Response(body)


@extend_schema(summary="The phase's export (zip): only what the caller may see",
               responses={(200, "application/zip"): OpenApiTypes.BINARY, **_errors(403, 404)}, tags=["phases"])
@api_view(["GET"])
def phase_export(request, slug: str):
    """The phase's export as a zip (`leaderboards.exports`): only what the caller may see."""
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    try:
        data = exports.phase_export_zip(phase=phase, viewer=visibility.viewer_for(request))
    except exports.ExportRefused as refusal:
        return Response({"detail": str(refusal)}, status=status.HTTP_404_NOT_FOUND)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{phase.slug}-export.zip"'
    return response
