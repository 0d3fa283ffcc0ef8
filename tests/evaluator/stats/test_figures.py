"""The plotly figure builders of `evaluator.figures`, fed a small snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from evaluator import figures
from evaluator.stats.compute import compute_snapshot
from evaluator.stats.snapshot import Snapshot


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for algorithm, level in (("alice", 0.85), ("bob", 0.8), ("carol", 0.7)):
        for i in range(40):
            for organ in ("liver", "spleen"):
                rows.append(
                    (
                        f"c{i:02d}",
                        f"site{i % 2}",
                        algorithm,
                        organ,
                        "dsc",
                        float(np.clip(level + rng.normal(0, 0.05), 0, 1)),
                    )
                )
    return pd.DataFrame(rows, columns=["case", "site", "algorithm", "organ", "metric", "value"])


@pytest.fixture(scope="module")
def snapshot(scores: pd.DataFrame) -> Snapshot:
    return compute_snapshot(
        scores, metrics=("dsc",), n_bootstrap=100, site_is_ood={"site0": False, "site1": True}
    )


def test_forest_plot_puts_the_best_on_top_with_ci_arms(snapshot: Snapshot) -> None:
    figure = figures.forest_plot(snapshot, "dsc")
    trace = figure.data[0]
    assert isinstance(figure, go.Figure) and list(trace.y)[-1] == "alice"
    best = snapshot.metrics["dsc"].leaderboard[0]
    assert trace.error_x.arrayminus[-1] == pytest.approx(best.mean - best.ci_low)
    assert figures.forest_plot(snapshot, "dsc", "liver").data[0].x[-1] is not None


def test_significance_heatmap_marks_column_better_than_row(snapshot: Snapshot) -> None:
    figure = figures.significance_heatmap(snapshot, "dsc", "liver")
    heatmap = figure.data[0]
    columns, rows = list(heatmap.x), list(heatmap.y)
    assert columns[0] == "alice" and rows[0] == "carol"
    assert heatmap.z[rows.index("carol")][columns.index("alice")] == 1.0
    assert heatmap.z[rows.index("alice")][columns.index("carol")] == 0.0
    assert heatmap.z[rows.index("bob")][columns.index("bob")] is None


def test_significance_heatmap_diagonal_line_runs_through_the_empty_cells(snapshot: Snapshot) -> None:
    figure = figures.significance_heatmap(snapshot, "dsc", "liver")
    z, (line,) = figure.data[0].z, figure.layout.shapes
    slope = (line.y1 - line.y0) / (line.x1 - line.x0)
    for column in range(len(z)):
        row = next(r for r in range(len(z)) if z[r][column] is None)
        assert line.y0 + slope * (column - line.x0) == pytest.approx(row)


def test_rank_stability_plot_has_a_blob_per_observed_rank(snapshot: Snapshot) -> None:
    figure = figures.rank_stability_plot(snapshot, "dsc")
    counts = snapshot.metrics["dsc"].rank_stability.rank_counts
    assert len(figure.data[0].x) == sum(1 for row in counts for c in row if c > 0)
    assert figures.rank_stability_plot(snapshot, "dsc", "spleen").data


def test_site_heatmap_marks_out_of_distribution_sites(snapshot: Snapshot) -> None:
    figure = figures.site_heatmap(snapshot, "dsc")
    assert list(figure.data[0].x) == ["site0", "site1 (OOD)"]
    assert list(figure.data[0].y)[0] == "alice"
    assert figures.site_heatmap(snapshot, "dsc", "liver").data[0].z is not None


def test_organ_boxplots_from_a_snapshot_or_from_scores_agree(snapshot: Snapshot, scores: pd.DataFrame) -> None:
    from_snapshot = figures.organ_boxplots(snapshot, "dsc")
    from_scores = figures.organ_boxplots(scores, "dsc")
    assert len(from_snapshot.data) == len(from_scores.data) == 3
    by_name = {t.name: t for t in from_scores.data}
    for trace in from_snapshot.data:
        np.testing.assert_allclose(trace.median, by_name[trace.name].median)


def test_unknown_metric_or_organ_is_a_clear_error(snapshot: Snapshot) -> None:
    with pytest.raises(KeyError, match="nsd"):
        figures.forest_plot(snapshot, "nsd")
    with pytest.raises(KeyError, match="pancreas"):
        figures.significance_heatmap(snapshot, "dsc", "pancreas")
