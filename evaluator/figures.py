"""Plotly figures of a leaderboard snapshot: CI forest plot, significance heatmap, rank blobs, site heatmap, boxplots.

Pure functions from the `Snapshot` of `evaluator.stats.compute.compute_snapshot` (or,
for the boxplots, a long score table) to `plotly.graph_objects.Figure`. They compute no
statistics beyond reading the snapshot, so pages can call them cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from evaluator.stats.aggregates import box_statistics
from evaluator.stats.snapshot import OrganStats, Snapshot
from evaluator.stats.tables import score_cube

SIGNIFICANT_COLOUR = "#f2d600"  # Touchstone's yellow: column significantly better than row
NOT_SIGNIFICANT_COLOUR = "#2b4ea2"  # Touchstone's blue


def _label(metric: str) -> str:
    return metric.upper()


def forest_plot(snapshot: Snapshot, metric: str, organ: str | None = None) -> go.Figure:
    """Mean and bootstrap CI per algorithm (best at the top); `organ` None = the headline."""
    section = snapshot.section(metric)
    rows: list[tuple[str, float | None, float | None, float | None, int | None]]
    if organ is None:
        rows = [(r.algorithm, r.mean, r.ci_low, r.ci_high, None) for r in section.leaderboard]
        what = "headline"
    else:
        if organ not in section.organs:
            raise KeyError(f"No organ {organ!r} for {metric}; organs: {section.organs}.")
        stats = section.organ_stats
        rows = [
            (
                a,
                stats[a][organ].mean,
                stats[a][organ].ci_low,
                stats[a][organ].ci_high,
                stats[a][organ].n_cases,
            )
            for a in stats
        ]
        what = organ
    rows = sorted(rows, key=lambda r: -np.inf if r[1] is None else r[1])  # best last = drawn at the top
    means = [r[1] for r in rows]
    level = snapshot.parameters.confidence_level
    figure = go.Figure(
        go.Scatter(
            x=means,
            y=[r[0] for r in rows],
            mode="markers",
            marker={"size": 9, "color": "#1f3b73"},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [None if r[3] is None or r[1] is None else r[3] - r[1] for r in rows],
                "arrayminus": [None if r[2] is None or r[1] is None else r[1] - r[2] for r in rows],
                "thickness": 1.5,
            },
            customdata=[[r[2], r[3], r[4]] for r in rows],
            hovertemplate="%{y}: %{x:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}]"
            + ("<br>N = %{customdata[2]}" if organ is not None else "")
            + "<extra></extra>",
        )
    )
    figure.update_layout(
        title={"text": f"{_label(metric)} {what}", "subtitle": {"text": f"mean and {level:.0%} bootstrap CI"}},
        xaxis_title=f"{_label(metric)}",
        yaxis={"automargin": True},
        height=max(300, 28 * len(rows) + 120),
        margin={"l": 10, "r": 20, "t": 80, "b": 50},
        template="plotly_white",
    )
    return figure


def significance_heatmap(snapshot: Snapshot, metric: str, organ: str) -> go.Figure:
    """Touchstone's significance map: yellow where the column algorithm is significantly better than the row.

    Columns in median order (best first), rows in reverse order, as the published figure.
    """
    section = snapshot.section(metric)
    try:
        panel = section.significance[organ]
    except KeyError:
        raise KeyError(f"No significance map for organ {organ!r}; organs: {section.organs}.") from None
    order: Sequence[str] = panel.order
    rows = list(reversed(order))
    index = {a: i for i, a in enumerate(order)}
    z: list[list[float | None]] = []
    hover: list[list[str]] = []
    for y in rows:
        z_row: list[float | None] = []
        hover_row: list[str] = []
        for x in order:
            if x == y:
                z_row.append(None)
                hover_row.append("")
                continue
            i, j = index[x], index[y]
            z_row.append(1.0 if panel.better[i][j] else 0.0)
            p_adj = panel.p_adjusted[i][j]
            hover_row.append(
                f"{x} better than {y}: {'yes' if panel.better[i][j] else 'no'}<br>"
                f"Holm-adjusted p = {'n/a' if p_adj is None else f'{p_adj:.3g}'}; N = {panel.n_cases[i][j]}"
            )
        z.append(z_row)
        hover.append(hover_row)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=list(order),
            y=rows,
            zmin=0,
            zmax=1,
            colorscale=[
                [0.0, NOT_SIGNIFICANT_COLOUR],
                [0.5, NOT_SIGNIFICANT_COLOUR],
                [0.5, SIGNIFICANT_COLOUR],
                [1.0, SIGNIFICANT_COLOUR],
            ],
            showscale=False,
            xgap=1,
            ygap=1,
            text=hover,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    n = len(order)
    # Through the (empty) diagonal cells: column i meets its own row at y index n - 1 - i.
    figure.add_shape(
        type="line", x0=-0.5, y0=n - 0.5, x1=n - 0.5, y1=-0.5, line={"color": "black", "width": 1}
    )
    alpha = snapshot.parameters.alpha
    figure.update_layout(
        title={
            "text": f"{_label(metric)} {organ}: significance",
            "subtitle": {"text": f"yellow: column better than row (Holm, α = {alpha})"},
        },
        xaxis={"tickangle": -45, "automargin": True},
        yaxis={"automargin": True},
        height=max(360, 24 * n + 200),
        template="plotly_white",
    )
    return figure


def rank_stability_plot(snapshot: Snapshot, metric: str, organ: str | None = None) -> go.Figure:
    """challengeR's blob plot: area of a blob = share of bootstrap resamples giving that rank.

    Black diamonds: the full-data rank; lines: the 95% range of bootstrap ranks (headline only).
    """
    stability = snapshot.section(metric).rank_stability
    source = stability if organ is None else stability.per_organ[organ]
    algorithms: Sequence[str] = source.algorithms
    counts = np.asarray(source.rank_counts, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    xs, ys, sizes, texts = [], [], [], []
    for a, algorithm in enumerate(algorithms):
        for k in np.flatnonzero(share[a] > 0):
            xs.append(algorithm)
            ys.append(int(k) + 1)
            sizes.append(float(share[a, k]))
            texts.append(f"{algorithm}: rank {int(k) + 1} in {share[a, k]:.1%} of resamples")
    figure = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            text=texts,
            hovertemplate="%{text}<extra></extra>",
            marker={"size": [4 + 36 * np.sqrt(s) for s in sizes], "color": "#1f3b73", "opacity": 0.6},
            name="bootstrap ranks",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=list(algorithms),
            y=source.full_rank,
            mode="markers",
            name="full-data rank",
            marker={"symbol": "diamond", "color": "black", "size": 8},
        )
    )
    if organ is None:
        for algorithm, low, high in zip(
            algorithms, stability.rank_ci_low, stability.rank_ci_high, strict=True
        ):
            if low is not None and high is not None:
                figure.add_shape(
                    type="line",
                    x0=algorithm,
                    x1=algorithm,
                    y0=low,
                    y1=high,
                    line={"color": "black", "width": 1},
                )
        tau = stability.kendall_tau.median
        subtitle = stability.method.replace("_", " ") + (
            f"; median Kendall's τ {tau:.3f}" if tau is not None else ""
        )
    else:
        subtitle = f"{organ}, mean then rank"
    n = len(algorithms)
    figure.update_layout(
        title={
            "text": f"{_label(metric)} rank stability",
            "subtitle": {"text": f"{stability.n_resamples} resamples; {subtitle}"},
        },
        yaxis={"autorange": "reversed", "dtick": 1, "range": [n + 0.5, 0.5], "title": "rank"},
        xaxis={"tickangle": -45, "automargin": True},
        height=max(380, 22 * n + 220),
        template="plotly_white",
    )
    return figure


def site_heatmap(snapshot: Snapshot, metric: str, organ: str | None = None) -> go.Figure:
    """Algorithms (leaderboard order) x sites: headline per site, or one organ's mean. OOD sites are marked."""
    section = snapshot.section(metric)
    per_site = section.per_site
    algorithms = [r.algorithm for r in section.leaderboard]
    labels = [
        f"{site} (OOD)" if ood else site
        for site, ood in zip(per_site.sites, per_site.out_of_distribution, strict=True)
    ]
    if organ is None:
        z = [per_site.headline[a] for a in algorithms]
        what = "headline"
    else:
        z = [per_site.organ_means[a][organ] for a in algorithms]
        what = organ
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=algorithms,
            colorscale="Viridis",
            colorbar={"title": _label(metric)},
            customdata=[per_site.n_cases] * len(algorithms),
            hovertemplate="%{y} at %{x}: %{z:.4f} (%{customdata} cases)<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{_label(metric)} {what} per site",
        yaxis={"autorange": "reversed", "automargin": True},
        xaxis={"tickangle": -45, "automargin": True},
        height=max(360, 24 * len(algorithms) + 200),
        template="plotly_white",
    )
    return figure


@dataclass(frozen=True)
class _Box:
    """One box of a box plot; None where the organ has no evaluable case."""

    q1: float | None
    median: float | None
    q3: float | None
    whisker_low: float | None
    whisker_high: float | None
    mean: float | None

    @classmethod
    def of(cls, stats: OrganStats) -> _Box:
        return cls(stats.q1, stats.median, stats.q3, stats.whisker_low, stats.whisker_high, stats.mean)


def _boxes_from_scores(scores: pd.DataFrame, metric: str) -> tuple[list[str], list[str], dict[str, dict[str, _Box]]]:
    cube = score_cube(scores, metric)
    boxes = box_statistics(cube.values.transpose(0, 2, 1))
    parts = (boxes.q1, boxes.median, boxes.q3, boxes.whisker_low, boxes.whisker_high, boxes.mean)
    rows = {
        algorithm: {
            organ: _Box(*(None if np.isnan(part[a, o]) else float(part[a, o]) for part in parts))
            for o, organ in enumerate(cube.organs)
        }
        for a, algorithm in enumerate(cube.algorithms)
    }
    return list(cube.algorithms), list(cube.organs), rows


def organ_boxplots(
    source: Snapshot | pd.DataFrame, metric: str, algorithms: Sequence[str] | None = None
) -> go.Figure:
    """Per-organ boxplots of per-case scores, one colour per algorithm.

    `source` is a snapshot (uses its precomputed quartiles and whiskers: small figures
    even for thousands of cases) or a long score table (quartiles computed here).
    Whiskers reach the most extreme case within 1.5 IQR of the quartiles.
    """
    if isinstance(source, pd.DataFrame):
        names, organs, rows = _boxes_from_scores(source, metric)
    else:
        section = source.section(metric)
        names = [r.algorithm for r in section.leaderboard]
        organs = list(section.organs)
        rows = {
            algorithm: {organ: _Box.of(stats) for organ, stats in by_organ.items()}
            for algorithm, by_organ in section.organ_stats.items()
        }
    chosen = list(algorithms) if algorithms is not None else names
    figure = go.Figure()
    for algorithm in chosen:
        stats = rows[algorithm]
        present = [o for o in organs if stats[o].median is not None]
        figure.add_trace(
            go.Box(
                name=algorithm,
                x=present,
                q1=[stats[o].q1 for o in present],
                median=[stats[o].median for o in present],
                q3=[stats[o].q3 for o in present],
                lowerfence=[stats[o].whisker_low for o in present],
                upperfence=[stats[o].whisker_high for o in present],
                mean=[stats[o].mean for o in present],
                boxpoints=False,
            )
        )
    figure.update_layout(
        title=f"{_label(metric)} per organ and algorithm",
        boxmode="group",
        yaxis_title=_label(metric),
        template="plotly_white",
        height=480,
    )
    return figure
