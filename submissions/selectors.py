"""Reads about submissions: progress of jobs, per-organ and per-site summaries, per-case rows."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from evaluator.stats.aggregates import DistanceMeans, distance_means, group_means, summarize
from evaluator.stats.tables import SCORE_COLUMNS, score_cube
from submissions.models import CaseResult, ExitReason, Job, Submission


def job_summaries(*, submission: Submission, include_logs: bool, include_last_line: bool = False) -> list[dict]:
    """Jobs with their outcome. Container output (the log tail, or a crash's last line) only when asked:
    callers ask only for the team's own submission on a phase that shares logs."""
    jobs = submission.jobs.prefetch_related("cases").order_by("index")
    return [
        {
            "index": job.index,
            "canary": job.is_canary,
            "state": job.state,
            "state_label": Job.State(job.state).label,
            "cases": job.cases.count(),
            "attempt": job.attempt,
            "exit_reason": job.exit_reason,
            "exit_reason_label": job.get_exit_reason_display() if job.exit_reason else "",
            "exit_code": job.exit_code,
            "detail": job.detail,
            "run_seconds": job.run_seconds,
            **({"log_tail": job.log_tail} if include_logs else {}),
            **(
                {"last_output_line": job.last_output_line}
                if include_last_line and job.exit_reason == ExitReason.CRASHED
                else {}
            ),
        }
        for job in jobs
    ]


def results_summary(*, submission: Submission) -> dict:
    """Headline DSC and NSD, per organ and per site, aggregated by `evaluator.stats` as the leaderboard is.

    Per organ: mean DSC/NSD over evaluable cases with N, missed-or-refused count, and the HD95 mean over the
    cases with a finite distance beside `hd95_n_infinite`, the cases whose HD95 is infinite (organ missed or
    no valid output; no finite worst value is set, so they are counted, never averaged away). Per site: the
    headline (unweighted mean of the site's organ means), cases and cases without valid output.
    """
    rows = list(
        CaseResult.objects.filter(submission=submission)
        .order_by("organ__label", "organ__name", "case__case_id")
        .values_list(
            "case__case_id", "case__site__code", "case__site__name", "case__site__out_of_distribution",
            "organ__label", "organ__name", "status", "refusal", "dsc", "nsd", "hd95_mm", "assd_mm", named=True,
        )
    )
    if not rows:
        return {"dsc": None, "nsd": None, "organs": [], "sites": []}
    table = pd.DataFrame.from_records(
        [
            (row.case__case_id, row.case__site__code, "submission", row.organ__name, metric,
             np.nan if value is None else value)
            for row in rows
            for metric, value in (("dsc", row.dsc), ("nsd", row.nsd))
        ],
        columns=list(SCORE_COLUMNS),
    )
    labels = {row.organ__name: row.organ__label for row in rows}  # in label order
    organs = list(labels)
    cubes = {metric: score_cube(table, metric, organs=organs) for metric in ("dsc", "nsd")}
    summaries = {metric: summarize(cube) for metric, cube in cubes.items()}
    by_site = {metric: group_means(cube, cube.sites.astype(object)) for metric, cube in cubes.items()}
    worst_mm = submission.phase.benchmark.distance_worst_mm
    hd95 = distance_summary(rows, organs, "hd95_mm", worst_mm=worst_mm)
    assd = distance_summary(rows, organs, "assd_mm", worst_mm=worst_mm)
    failed_statuses = (CaseResult.Status.MISSED, CaseResult.Status.REFUSED)
    organ_rows = [
        {
            "label": labels[organ],
            "organ": organ,
            "dsc": _number(summaries["dsc"].mean[0, o]),
            "nsd": _number(summaries["nsd"].mean[0, o]),
            "hd95_mm": _number(hd95.mean_mm[o]),
            "hd95_n_infinite": int(hd95.n_infinite[o]),
            "assd_mm": _number(assd.mean_mm[o]),
            "distance_worst_mm": worst_mm,
            "n": int(summaries["dsc"].n_cases[0, o]),
            "n_failed": sum(row.status in failed_statuses for row in rows if row.organ__name == organ),
        }
        for o, organ in enumerate(organs)
    ]
    sites = {row.case__site__code: row for row in rows}
    cases, failed = defaultdict(set), defaultdict(set)
    for row in rows:
        cases[row.case__site__code].add(row.case__case_id)
        if row.refusal:
            failed[row.case__site__code].add(row.case__case_id)
    site_rows = [
        {
            "site": code,
            "name": sites[code].case__site__name,
            "out_of_distribution": sites[code].case__site__out_of_distribution,
            "cases": len(cases[code]),
            "failed_cases": len(failed[code]),
            "dsc": _number(by_site["dsc"].headline[0, g]),
            "nsd": _number(by_site["nsd"].headline[0, g]),
        }
        for g, code in enumerate(by_site["dsc"].groups)
    ]
    return {
        "dsc": _number(summaries["dsc"].headline[0]),
        "nsd": _number(summaries["nsd"].headline[0]),
        "organs": organ_rows,
        "sites": site_rows,
    }


def distance_summary(rows: list, organs: list[str], field: str, *, worst_mm: float | None) -> DistanceMeans:
    """A surface distance (`hd95_mm`, `assd_mm`) per organ over its cases: NaN where the organ is not in the
    reference, infinite where it has no distance (missed, or no valid output), which counts at the
    benchmark's `worst_mm` when set (else it is counted beside the mean of the finite ones)."""
    distances: dict[str, list[float]] = {organ: [] for organ in organs}
    for row in rows:
        value = getattr(row, field)
        absent = row.status == CaseResult.Status.ABSENT
        distances[row.organ__name].append(np.nan if absent else np.inf if value is None else value)
    padded = np.full((len(organs), max(map(len, distances.values()), default=0)), np.nan)
    for o, organ in enumerate(organs):
        padded[o, : len(distances[organ])] = distances[organ]
    return distance_means(padded, worst_mm=worst_mm)


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def case_rows(*, submission: Submission) -> list[dict]:
    """Per case and organ, for the team's own download. No reference volumes: they describe hidden data."""
    return list(
        CaseResult.objects.filter(submission=submission)
        .order_by("case__case_id", "organ__label")
        .values(
            "case__case_id", "case__site__code", "organ__name", "status", "dsc", "nsd", "hd95_mm", "assd_mm",
            "predicted_volume_ml", "refusal", "message",
        )
    )
