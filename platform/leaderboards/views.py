"""Public pages: benchmarks, a phase's leaderboard with its statistics, and a submission's results."""

from functools import cache
from pathlib import Path

import plotly
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control

from benchmarks.models import Benchmark, Phase
from leaderboards import charts, selectors, summaries
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
    snapshot = selectors.latest_snapshot(phase=phase)
    statistics = (snapshot.statistics if snapshot else None) or {}
    sections = statistics.get("metrics", {})
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    metric = request.GET.get("metric")
    metric = metric if metric in sections else next(iter(sections), "dsc")
    organ = request.GET.get("organ")
    organ = organ if organ in organs else (organs[0] if organs else None)
    section = sections.get(metric, {})
    parameters = statistics.get("parameters", {})
    return render(
        request,
        "leaderboards/leaderboard.html",
        {
            "phase": phase,
            "benchmark": phase.benchmark,
            "snapshot": snapshot,
            "rows": snapshot.rows if snapshot else [],
            "organs": organs,
            "metrics": list(sections),
            "figures": charts.leaderboard_figures(snapshot, metric=metric, organ=organ) if snapshot else {},
            "headline_ci": summaries.headline_intervals(statistics),
            "rank_ranges": summaries.rank_ranges(statistics),
            "differences": summaries.difference_matrix(section),
            "breakdowns": summaries.breakdown_tables(section, parameters.get("alpha", 0.05)),
            "parameters": parameters,
            "metric": metric,
            "organ": organ,
            "sites": phase.benchmark.sites.all(),
        },
    )


def submission(request, submission_id: int):
    sub = get_object_or_404(Submission.objects.select_related("team", "phase__benchmark"), pk=submission_id)
    if sub.state == Submission.State.CANCELLED:
        raise Http404
    organs = submission_selectors.organ_summary(submission=sub)
    sites = submission_selectors.site_summary(submission=sub)
    return render(
        request,
        "leaderboards/submission.html",
        {
            "submission": sub,
            "phase": sub.phase,
            "jobs": submission_selectors.job_summaries(submission=sub, include_logs=False),
            "organs": organs,
            "sites": sites,
            "dsc": submission_selectors.headline(organs, "dsc"),
            "nsd": submission_selectors.headline(organs, "nsd"),
            "figures": charts.submission_figures(organs=organs, sites=sites) if organs else {},
            "standing": summaries.standing(selectors.latest_snapshot(phase=sub.phase), sub.pk),
        },
    )
