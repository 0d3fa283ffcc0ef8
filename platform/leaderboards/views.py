"""Public pages: benchmarks, a phase's leaderboard with its statistics, and a submission's results."""

from functools import cache
from pathlib import Path

import plotly
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control

from benchmarks.models import Benchmark, Phase
from leaderboards import charts, exports, selectors, summaries, visibility
from submissions import selectors as submission_selectors
from submissions.models import Submission


@cache
def _plotly_js_path() -> Path:
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@cache_control(public=True, max_age=86400)
def plotly_js(request):
    """plotly.js from the installed plotly package: served by us, never from a CDN."""
    return FileResponse(open(_plotly_js_path(), "rb"), content_type="application/javascript")


def home(request):
    benchmarks = Benchmark.objects.prefetch_related("phases", "sites", "organs").order_by("name")
    return render(request, "leaderboards/home.html", {"benchmarks": benchmarks})


def leaderboard(request, slug: str):
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    board = visibility.board_for(visibility.viewer_for(request), phase)
    statistics = board.statistics
    sections = statistics.metrics if statistics else {}
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    metric = request.GET.get("metric")
    metric = metric if metric in sections else next(iter(sections), "dsc")
    organ = request.GET.get("organ")
    organ = organ if organ in organs else (organs[0] if organs else None)
    section = sections.get(metric)
    return render(
        request,
        "leaderboards/leaderboard.html",
        {
            "phase": phase,
            "benchmark": phase.benchmark,
            "board": board,
            "snapshot": board.snapshot,
            "rows": board.rows,
            "organs": organs,
            "metrics": list(sections),
            "figures": selectors.snapshot_figures(
                snapshot=board.snapshot, statistics=statistics, metric=metric, organ=organ
            )
            if statistics and board.rows and board.snapshot
            else {},
            "headline_ci": summaries.headline_intervals(statistics),
            "rank_ranges": summaries.rank_ranges(statistics),
            "differences": summaries.difference_matrix(section) if section else {},
            "breakdowns": summaries.breakdown_tables(section, statistics.parameters.alpha)
            if statistics and section
            else [],
            "parameters": statistics.parameters if statistics else None,
            "metric": metric,
            "organ": organ,
            "sites": phase.benchmark.sites.all(),
        },
    )


def submission(request, submission_id: int):
    """A submission's page. Its team and staff see everything the rules allow them; anyone else sees it only
    if it is a row of the leaderboard they may see, and then only that row (no jobs, reasons or per-case data)."""
    sub = get_object_or_404(
        Submission.objects.select_related("team", "phase__benchmark", "disqualification"), pk=submission_id
    )
    viewer = visibility.viewer_for(request)
    if sub.state == Submission.State.CANCELLED and not viewer.is_staff:
        raise Http404
    if not visibility.can_see_submission(viewer, sub):
        raise Http404
    board = visibility.board_for(viewer, sub.phase)
    details = visibility.can_see_submission_details(viewer, sub)
    context = {
        "submission": sub,
        "phase": sub.phase,
        "details": details,
        # Own rows of an unpublished board carry no rank: the live rank and count describe the other teams.
        "standing": summaries.standing(board.snapshot, board.statistics, sub.pk)
        if board.snapshot and board.scope is visibility.BoardScope.FULL
        else None,
        "published": board.published,
    }
    if details:
        results = submission_selectors.results_summary(submission=sub)
        show_logs = visibility.can_see_logs(viewer, sub)
        jobs = submission_selectors.job_summaries(submission=sub, include_logs=False, include_last_line=show_logs)
        if visibility.can_see_engine_errors(viewer):
            engine = dict(sub.jobs.values_list("index", "platform_detail"))
            for job in jobs:
                job["platform_detail"] = engine.get(job["index"], "")
        disqualification = getattr(sub, "disqualification", None)
        context.update(
            jobs=jobs,
            organs=results["organs"],
            sites=results["sites"],
            dsc=results["dsc"],
            nsd=results["nsd"],
            disqualification=disqualification,
            distance_worst_mm=sub.phase.benchmark.distance_worst_mm,
        )
    else:
        row = next(r for r in board.rows if r["submission_id"] == sub.pk)
        results = summaries.row_results(row)
        context.update(organs=results["organs"], sites=[], dsc=results["dsc"], nsd=results["nsd"], jobs=[])
    context["figures"] = (
        charts.submission_figures(organs=context["organs"], sites=context["sites"]) if context["organs"] else {}
    )
    return render(request, "leaderboards/submission.html", context)


EXPORT_TYPES = {
    ".csv": "text/csv", ".json": "application/json", ".parquet": "application/vnd.apache.parquet", ".txt": "text/plain",
}


def export_file(request, slug: str, name: str):
    """One file of the phase's export (`leaderboards.exports`), as much as this visitor may see."""
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    try:
        files = exports.phase_export(phase=phase, viewer=visibility.viewer_for(request))
    except exports.ExportRefused:
        raise Http404 from None
    if name not in files:
        raise Http404
    response = HttpResponse(files[name], content_type=EXPORT_TYPES.get(Path(name).suffix, "application/octet-stream"))
    response["Content-Disposition"] = f'attachment; filename="{slug}-{Path(name).name}"'
    return response
