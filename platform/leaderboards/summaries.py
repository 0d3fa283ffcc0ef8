"""Reads a snapshot's statistics into the small tables the leaderboard page shows (no statistics computed here)."""

from __future__ import annotations

from typing import Any

FACTOR_LABELS = {
    "site": "Hospital",
    "distribution": "In- vs out-of-distribution",
    "manufacturer": "Scanner manufacturer",
    "scanner_model": "Scanner model",
    "sex": "Sex",
    "age_band": "Age band",
}


def headline_intervals(statistics: dict) -> dict[str, dict[str, tuple]]:
    """{algorithm: {metric: (low, high)}} of the headline bootstrap CIs."""
    intervals: dict[str, dict[str, tuple]] = {}
    for metric, section in statistics.get("metrics", {}).items():
        for entry in section.get("leaderboard", []):
            intervals.setdefault(entry["algorithm"], {})[metric] = (entry["ci_low"], entry["ci_high"])
    return intervals


def rank_ranges(statistics: dict, metric: str = "dsc") -> dict[str, dict[str, Any]]:
    """{algorithm: {low, high, first}}: the 95% range of bootstrap ranks and the share of resamples ranked first."""
    stability = statistics.get("metrics", {}).get(metric, {}).get("rank_stability")
    if not stability:
        return {}
    ranges = {}
    for algorithm, low, high, counts in zip(
        stability["algorithms"],
        stability["rank_ci_low"],
        stability["rank_ci_high"],
        stability["rank_counts"],
        strict=True,
    ):
        total = sum(counts)
        ranges[algorithm] = {
            "low": None if low is None else round(low),
            "high": None if high is None else round(high),
            "first": counts[0] / total if total else None,
        }
    return ranges


def difference_matrix(section: dict) -> dict[str, Any]:
    """Paired bootstrap differences of the headline, row minus column, as table rows.

    A cell is `better`/`worse` when its CI excludes 0 (the row algorithm is better/worse than the column one).
    """
    paired = section.get("paired_differences")
    if not paired:
        return {}
    names = paired["algorithms"]
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            difference, low, high = (paired[key][i][j] for key in ("difference", "ci_low", "ci_high"))
            if i == j or difference is None:
                cells.append(None)
                continue
            verdict = "better" if low is not None and low > 0 else "worse" if high is not None and high < 0 else ""
            cells.append({"difference": difference, "low": low, "high": high, "verdict": verdict})
        rows.append({"algorithm": name, "cells": cells})
    return {"algorithms": names, "rows": rows}


def breakdown_tables(section: dict, alpha: float) -> list[dict[str, Any]]:
    """One table per factor: headline per group for every algorithm, with its Kruskal–Wallis test.

    `pairs` lists the group pairs whose Mann–Whitney U test is significant after the correction.
    """
    algorithms = [entry["algorithm"] for entry in section.get("leaderboard", [])]
    tables = []
    for factor, data in section.get("breakdowns", {}).items():
        rows = []
        for algorithm in algorithms:
            test = data["tests"].get(algorithm, {})
            rows.append(
                {
                    "algorithm": algorithm,
                    "values": data["headline"].get(algorithm, []),
                    "kruskal_p": test.get("kruskal_p"),
                    "significant": bool(test.get("significant")),
                    "pairs": [
                        f"{p['group_a']} vs {p['group_b']}" for p in test.get("pairwise", []) if p["significant"]
                    ],
                    "excluded": test.get("excluded_groups", []),
                }
            )
        tables.append(
            {
                "factor": factor,
                "label": FACTOR_LABELS.get(factor, factor.replace("_", " ").capitalize()),
                "groups": list(zip(data["groups"], data["n_cases"], strict=True)),
                "rows": rows,
                "alpha": alpha,
            }
        )
    return tables


def standing(snapshot, submission_id: int) -> dict[str, Any] | None:
    """Where a submission stands in a snapshot: rank, headline CIs, rank range and per-organ CIs (DSC)."""
    if snapshot is None:
        return None
    row = next((r for r in snapshot.rows if r["submission_id"] == submission_id), None)
    if row is None:
        return None
    statistics = snapshot.statistics or {}
    name = row["name"]
    organ_stats = statistics.get("metrics", {}).get("dsc", {}).get("organ_stats", {}).get(name, {})
    return {
        "rank": row["rank"],
        "of": len(snapshot.rows),
        "intervals": headline_intervals(statistics).get(name, {}),
        "rank_range": rank_ranges(statistics).get(name),
        "organ_intervals": {organ: (s["ci_low"], s["ci_high"]) for organ, s in organ_stats.items()},
        "created_at": snapshot.created_at,
    }
