"""Reads for leaderboards: which submissions are ranked, and their per-case scores as a long table."""

from __future__ import annotations

import pandas as pd

from benchmarks.models import Phase
from leaderboards.models import LeaderboardSnapshot
from submissions.models import CaseResult, Submission

METRICS = ("dsc", "nsd")


def ranked_submissions(*, phase: Phase) -> list[Submission]:
    """The latest completed submission of every (team, algorithm) in the phase."""
    latest: dict[tuple[int, str], Submission] = {}
    completed = (
        Submission.objects.filter(phase=phase, state=Submission.State.COMPLETED)
        .select_related("team")
        .order_by("completed_at", "pk")
    )
    for submission in completed:
        latest[(submission.team_id, submission.algorithm)] = submission
    return list(latest.values())


def display_name(submission: Submission) -> str:
    return f"{submission.team.name} / {submission.algorithm}"


def score_table(*, submissions: list[Submission]) -> pd.DataFrame:
    """Per-case scores, long: case, site, algorithm, organ, metric, value (NaN: organ not in the reference)."""
    names = {submission.pk: display_name(submission) for submission in submissions}
    rows = CaseResult.objects.filter(submission__in=submissions).values_list(
        "submission_id", "case__case_id", "case__site__code", "organ__name", *METRICS
    )
    records = []
    for submission_id, case_id, site, organ, *values in rows:
        for metric, value in zip(METRICS, values, strict=True):
            records.append((case_id, site, names[submission_id], organ, metric, value))
    table = pd.DataFrame.from_records(records, columns=["case", "site", "algorithm", "organ", "metric", "value"])
    table["value"] = table["value"].astype(float)
    return table


def latest_snapshot(*, phase: Phase) -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.filter(phase=phase).order_by("-created_at", "-pk").first()
