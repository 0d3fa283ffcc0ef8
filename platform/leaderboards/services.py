"""Computes leaderboard snapshots off the request path: ranked rows plus the statistics."""

from __future__ import annotations

import time

import pandas as pd
from django.db.models import Count, Q

from benchmarks.models import Phase
from leaderboards import selectors
from leaderboards.models import LeaderboardSnapshot
from leaderboards.selectors import METRICS
from submissions.models import CaseResult

# Case metadata the leaderboard breaks results down by (scalar values; "age" is banded by the statistics).
BREAKDOWN_FIELDS = ("manufacturer", "scanner_model", "sex", "age")


def leaderboard_rows(*, submissions, statistics: dict, organs: list[str]) -> list[dict]:
    """One row per algorithm, read from the statistics (no second aggregation): per-organ means with N
    (NaN excluded), headline = unweighted mean of organ means; ordered and ranked as the statistics ranked
    the DSC headline (the benchmark's rank method; ties share a rank)."""
    failures = dict(
        CaseResult.objects.filter(submission__in=submissions)
        .values_list("submission_id")
        .annotate(n=Count("case", filter=~Q(refusal=""), distinct=True))
    )
    sections = statistics.get("metrics", {})
    boards = {metric: {e["algorithm"]: e for e in sections.get(metric, {}).get("leaderboard", [])} for metric in METRICS}
    rows = []
    for submission in submissions:
        name = selectors.display_name(submission)
        headline = boards["dsc"].get(name, {})
        row = {
            "submission_id": submission.pk,
            "team": submission.team.name,
            "algorithm": submission.algorithm,
            "name": name,
            "completed_at": submission.completed_at.isoformat() if submission.completed_at else None,
            "rank": headline.get("rank"),
            "cases": statistics["n_cases"] - headline["n_missing_cases"] if headline else 0,
            "failed_cases": int(failures.get(submission.pk, 0)),
        }
        for metric in METRICS:
            organ_stats = sections.get(metric, {}).get("organ_stats", {}).get(name, {})
            row[metric] = {
                "headline": boards[metric].get(name, {}).get("mean"),
                "organs": {
                    organ: {
                        "mean": organ_stats.get(organ, {}).get("mean"),
                        "n": organ_stats.get(organ, {}).get("n_cases", 0),
                    }
                    for organ in organs
                },
            }
        rows.append(row)
    order = {name: position for position, name in enumerate(boards["dsc"])}
    return sorted(rows, key=lambda row: (order.get(row["name"], len(order)), row["name"]))


def snapshot_compute(*, phase_id: int, n_bootstrap: int | None = None) -> LeaderboardSnapshot:
    """Rank the phase's latest submissions and compute their statistics; store them as a snapshot."""
    from evaluator.stats.snapshot import compute_snapshot

    phase = Phase.objects.select_related("benchmark").get(pk=phase_id)
    started = time.perf_counter()
    submissions = selectors.ranked_submissions(phase=phase)
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    table = selectors.score_table(submissions=submissions)
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
    return LeaderboardSnapshot.objects.create(
        phase=phase,
        submission_ids=[s.pk for s in submissions],
        rows=leaderboard_rows(submissions=submissions, statistics=statistics, organs=organs),
        statistics=statistics,
        compute_seconds=time.perf_counter() - started,
    )
