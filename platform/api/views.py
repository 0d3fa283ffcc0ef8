"""REST API for teams and the CLI. Views parse input, call one service or selector, and render."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from benchmarks.models import Phase
from leaderboards import selectors as leaderboard_selectors
from leaderboards import summaries
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
        "memory_mb": phase.memory_mb,
        "cpus": phase.cpus,
        "gpu": phase.gpu,
        "submissions_per_day": phase.submissions_per_day,
        "labels": {o.label: o.name for o in phase.benchmark.organs.all()},
    }


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
            organs = selectors.organ_summary(submission=submission)
            data["results"] = {
                "dsc": selectors.headline(organs, "dsc"),
                "nsd": selectors.headline(organs, "nsd"),
                "organs": organs,
                "sites": selectors.site_summary(submission=submission),
            }
    return data


def _own_submission(request, submission_id: int) -> Submission:
    return get_object_or_404(
        Submission.objects.select_related("phase", "team", "image"), pk=submission_id, team=request.user.team
    )


@api_view(["GET"])
def phases(request):
    return Response([_phase_dict(p) for p in Phase.objects.select_related("benchmark").order_by("slug")])


@api_view(["GET", "POST"])
def submissions(request, slug: str | None = None):
    """GET: the team's submissions. POST to /phases/<slug>/submissions/: upload a `docker save` tar as the body."""
    if request.method == "GET":
        mine = Submission.objects.filter(team=request.user.team).select_related("phase", "team", "image")
        return Response([_submission_dict(request, s, detail=False) for s in mine[:200]])
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
        image = intake.image_store(team=request.user.team, stream=request._request, declared_size=declared)
        submission = intake.submission_create(team=request.user.team, phase=phase, algorithm=algorithm, image=image)
    except intake.SubmissionRefused as refusal:
        return Response({"detail": str(refusal)}, status=status.HTTP_400_BAD_REQUEST)
    submission.refresh_from_db()
    return Response(_submission_dict(request, submission, detail=True), status=status.HTTP_201_CREATED)


@api_view(["GET"])
def submission_detail(request, submission_id: int):
    return Response(_submission_dict(request, _own_submission(request, submission_id), detail=True))


@api_view(["GET"])
def submission_results(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    if submission.state != Submission.State.COMPLETED:
        return Response(
            {"detail": f"Submission {submission.pk} is {submission.get_state_display().lower()}; results come when it completes."},
            status=status.HTTP_409_CONFLICT,
        )
    return Response({"id": submission.pk, "cases": selectors.case_rows(submission=submission)})


@api_view(["GET"])
def submission_logs(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    if not submission.phase.show_logs:
        return Response(
            {"detail": f"Phase '{submission.phase.slug}' does not share container logs with teams."},
            status=status.HTTP_403_FORBIDDEN,
        )
    return Response({"id": submission.pk, "jobs": selectors.job_summaries(submission=submission, include_logs=True)})


@api_view(["GET"])
def leaderboard(request, slug: str):
    """The ranked rows with headline CIs and rank ranges; `?statistics=full` adds the whole snapshot."""
    phase = get_object_or_404(Phase, slug=slug)
    snapshot = leaderboard_selectors.latest_snapshot(phase=phase)
    statistics = (snapshot.statistics if snapshot else None) or {}
    intervals, ranges = summaries.headline_intervals(statistics), summaries.rank_ranges(statistics)
    rows = [
        {
            **row,
            **{metric: {**row[metric], "ci": intervals.get(row["name"], {}).get(metric)} for metric in ("dsc", "nsd")},
            "rank_range": ranges.get(row["name"]),
        }
        for row in (snapshot.rows if snapshot else [])
    ]
    body = {
        "phase": phase.slug,
        "computed_at": snapshot.created_at.isoformat() if snapshot else None,
        "parameters": statistics.get("parameters", {}),
        "rows": rows,
        "url": request.build_absolute_uri(reverse("leaderboard-page", args=[phase.slug])),
    }
    if request.query_params.get("statistics") == "full":
        body["statistics"] = statistics
    return Response(body)


