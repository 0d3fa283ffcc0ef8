"""Plotly figures for the pages, rendered as HTML fragments (plotly.js itself is loaded once by base.html)."""

from __future__ import annotations

import plotly.graph_objects as go

from evaluator import figures as figures_lib
from evaluator.stats.snapshot import Snapshot

PALETTE = {"dsc": "#1f6feb", "nsd": "#0e9384"}


def to_html(figure: go.Figure, div_id: str) -> str:
    figure.update_layout(template="plotly_white", font={"size": 13})
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def submission_figures(*, organs: list[dict], sites: list[dict]) -> dict[str, str]:
    names = [organ["organ"] for organ in organs]
    by_organ = go.Figure(
        [
            go.Bar(name=metric.upper(), x=names, y=[organ[metric] for organ in organs], marker_color=color)
            for metric, color in PALETTE.items()
        ]
    )
    by_organ.update_layout(title="Mean per organ (evaluable cases)", barmode="group", yaxis={"range": [0, 1]})
    by_site = go.Figure(
        [
            go.Bar(
                name=metric.upper(),
                x=[f"{site['name']}{' (OOD)' if site['out_of_distribution'] else ''}" for site in sites],
                y=[site[metric] for site in sites],
                marker_color=color,
            )
            for metric, color in PALETTE.items()
        ]
    )
    by_site.update_layout(title="Headline per site (mean of organ means)", barmode="group", yaxis={"range": [0, 1]})
    return {"organs": to_html(by_organ, "chart-organs"), "sites": to_html(by_site, "chart-sites")}


def leaderboard_figures(statistics: Snapshot, *, metric: str = "dsc", organ: str | None = None) -> dict[str, str]:
    """The statistics figures of one metric (and one organ for the organ-level ones); {} without that metric."""
    section = statistics.metrics.get(metric)
    if section is None:
        return {}
    organ = organ if organ in section.organs else section.organs[0]
    builders = {
        "forest": lambda: figures_lib.forest_plot(statistics, metric),
        "forest_organ": lambda: figures_lib.forest_plot(statistics, metric, organ),
        "significance": lambda: figures_lib.significance_heatmap(statistics, metric, organ),
        "rank_stability": lambda: figures_lib.rank_stability_plot(statistics, metric),
        "sites": lambda: figures_lib.site_heatmap(statistics, metric),
        "boxplots": lambda: figures_lib.organ_boxplots(statistics, metric),
    }
    return {name: to_html(build(), f"chart-{name}") for name, build in builders.items()}
