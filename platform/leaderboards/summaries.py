"""Reads a snapshot's statistics into the small tables the leaderboard page shows (no statistics computed here)."""

from __future__ import annotations

from typing import Any

from evaluator.stats.snapshot import MetricSection, Snapshot
from leaderboards.models import LeaderboardSnapshot

FACTOR_LABELS = {
    "site": "Hospital",
    "distribution": "In- vs out-of-distribution",
    "manufacturer": "Scanner manufacturer",
    "scanner_model": "Scanner model",
    "sex": "Sex",
    "age_band": "Age band",
}


def headline_intervals(statistics: Snapshot | None) -> dict[str, dict[str, tuple]]:
    """{algorithm: {metric: (low, high)}} of the headline bootstrap CIs."""
    intervals: dict[str, dict[str, tuple]] = {}
    for metric, section in (statistics.metrics if statistics else {}).items():
        for entry in section.leaderboard:
            intervals.setdefault(entry.algorithm, {})[metric] = (entry.ci_low, entry.ci_high)
    return intervals


def rank_ranges(statistics: Snapshot | None, metric: str = "dsc") -> dict[str, dict[str, Any]]:
    """{algorithm: {low, high, first}}: the 95% range of bootstrap ranks and the share of resamples ranked first."""
    if statistics is None or metric not in statistics.metrics:
        return {}
    stability = statistics.metrics[metric].rank_stability
    ranges = {}
    for algorithm, low, high, counts in zip(
        stability.algorithms, stability.rank_ci_low, stability.rank_ci_high, stability.rank_counts, strict=True
    ):
        total = sum(counts)
        ranges[algorithm] = {
            "low": None if low is None else round(low),
            "high": None if high is None else round(high),
            "first": counts[0] / total if total else None,
        }
    return ranges


def difference_matrix(section: MetricSection) -> dict[str, Any]:
    """Paired bootstrap differences of the headline, row minus column, as table rows.

    A cell is `better`/`worse` when its CI excludes 0 (the row algorithm is better/worse than the column one).
    """
    paired = section.paired_differences
    names = paired.algorithms
    rows = []
    for i, name in enumerate(names):
        cells: list[dict[str, Any] | None] = []
        for j in range(len(names)):
            difference, low, high = paired.difference[i][j], paired.ci_low[i][j], paired.ci_high[i][j]
            if i == j or difference is None:
                cells.append(None)
                continue
            verdict = "better" if low is not None and low > 0 else "worse" if high is not None and high < 0 else ""
            cells.append({"difference": difference, "low": low, "high": high, "verdict": verdict})
        rows.append({"algorithm": name, "cells": cells})
    return {"algorithms": names, "rows": rows} if names else {}


def breakdown_tables(section: MetricSection, alpha: float) -> list[dict[str, Any]]:
    """One table per factor: headline per group for every algorithm, with its Kruskal–Wallis test.

    `pairs` lists the group pairs whose Mann–Whitney U test is significant after the correction.
    """
    tables = []
    for factor, data in section.breakdowns.items():
        rows = []
        for entry in section.leaderboard:
            test = data.tests.get(entry.algorithm)  # None: too few groups with enough cases to test
            rows.append(
                {
                    "algorithm": entry.algorithm,
                    "values": data.headline[entry.algorithm],
                    "kruskal_p": test.kruskal_p if test else None,
                    "significant": test.significant if test else False,
                    "pairs": [f"{p.group_a} vs {p.group_b}" for p in test.pairwise if p.significant] if test else [],
                    "excluded": test.excluded_groups if test else (),
                }
            )
        tables.append(
            {
                "factor": factor,
                "label": FACTOR_LABELS.get(factor, factor.replace("_", " ").capitalize()),
                "groups": list(zip(data.groups, data.n_cases, strict=True)),
                "rows": rows,
                "alpha": alpha,
            }
        )
    return tables


def standing(
    snapshot: LeaderboardSnapshot | None, statistics: Snapshot | None, submission_id: int
) -> dict[str, Any] | None:
    """Where a submission stands in a snapshot: rank, headline CIs, rank range and per-organ CIs (DSC)."""
    if snapshot is None:
        return None
    row = next((r for r in snapshot.rows if r["submission_id"] == submission_id), None)
    if row is None:
        return None
    name = row["name"]
    dsc = statistics.metrics.get("dsc") if statistics else None
    organ_stats = dsc.organ_stats.get(name, {}) if dsc else {}
    return {
        "rank": row["rank"],
        "of": len(snapshot.rows),
        "intervals": headline_intervals(statistics).get(name, {}),
        "rank_range": rank_ranges(statistics).get(name),
        "organ_intervals": {organ: (s.ci_low, s.ci_high) for organ, s in organ_stats.items()},
        "created_at": snapshot.created_at,
    }


def row_results(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row as the submission page's organ table (what the public board shows, nothing more)."""
    organs = [
        {
            "organ": organ,
            "dsc": values.get("mean"),
            "nsd": row["nsd"]["organs"].get(organ, {}).get("mean"),
            "n": values.get("n"),
        }
        for organ, values in row["dsc"]["organs"].items()
    ]
    return {"dsc": row["dsc"]["headline"], "nsd": row["nsd"]["headline"], "organs": organs}
