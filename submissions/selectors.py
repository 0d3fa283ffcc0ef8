"""Reads about submissions: progress of jobs, per-organ and per-site summaries, per-case rows."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from submissions.models import CaseResult, ExitReason, Job, Submission
from submissions.sandbox import last_output_line


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
                {"last_output_line": last_output_line(job.log_tail)}
                if include_last_line and job.exit_reason == ExitReason.CRASHED
                else {}
            ),
        }
        for job in jobs
    ]


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None]
    return float(np.mean(finite)) if finite else None


def organ_summary(*, submission: Submission) -> list[dict]:
    """Per organ: mean DSC/NSD/HD95 over evaluable cases, N evaluable, N missed or refused."""
    grouped: dict[tuple[int, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    rows = CaseResult.objects.filter(submission=submission).values_list(
        "organ__label", "organ__name", "status", "dsc", "nsd", "hd95_mm"
    )
    for label, name, status, dsc, nsd, hd95 in rows:
        entry = grouped[(label, name)]
        entry["status"].append(status)
        if status != CaseResult.Status.ABSENT:
            entry["dsc"].append(dsc)
            entry["nsd"].append(nsd)
            entry["hd95_mm"].append(hd95)
    summary = []
    for (label, name), entry in sorted(grouped.items()):
        summary.append(
            {
                "label": label,
                "organ": name,
                "dsc": _mean(entry["dsc"]),
                "nsd": _mean(entry["nsd"]),
                "hd95_mm": _mean(entry["hd95_mm"]),
                "n": len(entry["dsc"]),
                "n_failed": sum(s in (CaseResult.Status.MISSED, CaseResult.Status.REFUSED) for s in entry["status"]),
            }
        )
    return summary


def headline(organs: list[dict], metric: str) -> float | None:
    return _mean([organ[metric] for organ in organs])


def site_summary(*, submission: Submission) -> list[dict]:
    """Per site: headline DSC and NSD (unweighted mean of the site's organ means) and case counts."""
    values: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    sites: dict[str, tuple[str, bool]] = {}
    cases: dict[str, set] = defaultdict(set)
    failed: dict[str, set] = defaultdict(set)
    rows = CaseResult.objects.filter(submission=submission).values_list(
        "case__site__code", "case__site__name", "case__site__out_of_distribution", "case_id", "organ__name",
        "dsc", "nsd", "status", "refusal",
    )
    for code, name, ood, case_id, organ, dsc, nsd, status, refusal in rows:
        sites[code] = (name, ood)
        cases[code].add(case_id)
        if refusal:
            failed[code].add(case_id)
        if status != CaseResult.Status.ABSENT:
            values[code]["dsc"][organ].append(dsc)
            values[code]["nsd"][organ].append(nsd)
    return [
        {
            "site": code,
            "name": sites[code][0],
            "out_of_distribution": sites[code][1],
            "cases": len(cases[code]),
            "failed_cases": len(failed[code]),
            "dsc": _mean([_mean(v) for v in values[code]["dsc"].values()]),
            "nsd": _mean([_mean(v) for v in values[code]["nsd"].values()]),
        }
        for code in sorted(sites)
    ]


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
