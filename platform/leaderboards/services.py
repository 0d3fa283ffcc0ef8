"""Computes leaderboard snapshots off the request path: ranked rows plus the statistics."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from django.db.models import Count, Q

from benchmarks.models import Phase
from leaderboards import selectors
from leaderboards.models import LeaderboardSnapshot
from submissions.models import CaseResult

# Case metadata the leaderboard breaks results down by (scalar values; "age" is banded by the statistics).
BREAKDOWN_FIELDS = ("manufacturer", "scanner_model", "sex", "age")


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def leaderboard_rows(*, table: pd.DataFrame, submissions, organs: list[str]) -> list[dict]:
    """One row per algorithm: per-organ means with N (NaN excluded), headline = unweighted mean of organ means."""
    rows = []
    failures = dict(
        CaseResult.objects.filter(submission__in=submissions)
        .values_list("submission_id")
        .annotate(n=Count("case", filter=~Q(refusal=""), distinct=True))
    )
    for submission in submissions:
        name = selectors.display_name(submission)
        mine = table[table["algorithm"] == name]
        row = {
            "submission_id": submission.pk,
            "team": submission.team.name,
            "algorithm": submission.algorithm,
            "name": name,
            "completed_at": submission.completed_at.isoformat() if submission.completed_at else None,
            "cases": int(mine["case"].nunique()),
            "failed_cases": int(failures.get(submission.pk, 0)),
        }
        for metric in selectors.METRICS:
            values = mine[mine["metric"] == metric]
            per_organ = {}
            for organ in organs:
                scores = values.loc[values["organ"] == organ, "value"].to_numpy(dtype=float)
                evaluable = scores[~np.isnan(scores)]
                per_organ[organ] = {
                    "mean": _clean(evaluable.mean()) if evaluable.size else None,
                    "n": int(evaluable.size),
                }
            means = [entry["mean"] for entry in per_organ.values() if entry["mean"] is not None]
            row[metric] = {"headline": _clean(float(np.mean(means))) if means else None, "organs": per_organ}
        rows.append(row)
    rows.sort(key=lambda r: (-(r["dsc"]["headline"] or -1.0), r["name"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def ranked_by_statistics(rows: list[dict], statistics: dict, metric: str = "dsc") -> list[dict]:
    """Order and rank the rows as the statistics ranked the algorithms (the benchmark's rank method).

    Ties share a rank; without statistics the rows keep their headline order.
    """
    board = statistics.get("metrics", {}).get(metric, {}).get("leaderboard", [])
    ranks = {entry["algorithm"]: entry["rank"] for entry in board}
    if not ranks:
        return rows
    order = {entry["algorithm"]: position for position, entry in enumerate(board)}
    rows = sorted(rows, key=lambda row: order.get(row["name"], len(order)))
    for row in rows:
        row["rank"] = ranks.get(row["name"], row["rank"])
    return rows


def snapshot_compute(*, phase_id: int, n_bootstrap: int | None = None) -> LeaderboardSnapshot:
    """Rank the phase's latest submissions and compute their statistics; store them as a snapshot."""
    from evaluator.stats.snapshot import compute_snapshot

    phase = Phase.objects.select_related("benchmark").get(pk=phase_id)
    started = time.perf_counter()
    submissions = selectors.ranked_submissions(phase=phase)
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    table = selectors.score_table(submissions=submissions)
    rows = leaderboard_rows(table=table, submissions=submissions, organs=organs)
    statistics: dict = {}
    if len(submissions) >= 1 and not table.empty:
        sites = dict(phase.benchmark.sites.values_list("code", "out_of_distribution"))
        metadata = pd.DataFrame.from_records(
            [
                {"case": case_id, **{key: meta.get(key) for key in BREAKDOWN_FIELDS if key in meta}}
                for case_id, meta in phase.cases.values_list("case_id", "metadata")
            ]
        )
        statistics = compute_snapshot(
            table,
            site_is_ood=sites,
            case_metadata=metadata,
            organs=organs,
            n_bootstrap=n_bootstrap or phase.benchmark.bootstrap_samples,
            seed=phase.benchmark.bootstrap_seed,
            ci_method=phase.benchmark.ci_method,
            p_value_method=phase.benchmark.p_value_method,
            rank_method=phase.benchmark.rank_method,
        )
        rows = ranked_by_statistics(rows, statistics)
    return LeaderboardSnapshot.objects.create(
        phase=phase,
        submission_ids=[s.pk for s in submissions],
        rows=rows,
        statistics=statistics,
        compute_seconds=time.perf_counter() - started,
    )
