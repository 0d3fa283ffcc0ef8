"""What the portal shows a team of its own submissions: live stages, history, paired comparisons."""

from __future__ import annotations

import math
from collections import defaultdict

from benchmarks.models import Phase
from leaderboards.models import PublicPick
from leaderboards.selectors import ranked_submissions
from submissions import selectors as submission_selectors
from submissions.models import CaseResult, Job, Submission
from teams.models import Membership, Team

FINAL_JOB_STATES = {Job.State.SUCCEEDED, Job.State.FAILED, Job.State.CANCELLED}


def teams_of(*, user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("team").order_by("team__name"))


def membership_of(*, user, team: Team) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, team=team).first()


def phase_history(*, team: Team, phase: Phase) -> list[dict]:
    """The team's submissions to a phase, newest first, each completed one with the one to compare it with (the
    newest other completed one) and whether it is the team's row on the leaderboard."""
    submissions = list(team.submissions.filter(phase=phase).select_related("disqualification").order_by("-created_at"))
    completed = [s for s in submissions if s.state == Submission.State.COMPLETED]
    public_ids = {s.pk for s in ranked_submissions(phase=phase) if s.team_id == team.pk}
    picked_id = PublicPick.objects.filter(team=team, phase=phase).values_list("submission_id", flat=True).first()
    rows = []
    for submission in submissions:
        other = next((s for s in completed if s.pk != submission.pk), None)
        is_completed = submission.state == Submission.State.COMPLETED
        disqualified = hasattr(submission, "disqualification")
        rows.append({
            "submission": submission,
            # (older, newer): the comparison page shows newer − older
            "compare": (sorted((submission, other), key=lambda s: (s.created_at, s.pk))
                        if is_completed and other is not None else None),
            "is_public": submission.pk in public_ids,
            "is_picked": submission.pk == picked_id,
            "can_pick": is_completed and not disqualified and submission.pk != picked_id,
            "disqualified": disqualified,
        })
    return rows


def _stage(key: str, label: str, status: str, detail: str = "") -> dict:
    return {"key": key, "label": label, "status": status, "detail": detail}


def submission_stages(*, submission: Submission, jobs: list[dict]) -> list[dict]:
    """upload → image checks → canary → fan-out → scoring → done; each pending, active, done or failed."""
    state = submission.state
    final = state in (Submission.State.COMPLETED, Submission.State.FAILED, Submission.State.CANCELLED)
    refused = state == Submission.State.FAILED and not jobs
    stages = [_stage("upload", "Upload", "done", "The image arrived and was stored.")]
    if state == Submission.State.VALIDATING:
        stages.append(_stage("image", "Image checks", "active", "Reading the tar and loading it into Docker."))
    else:
        stages.append(_stage("image", "Image checks", "failed" if refused else "done",
                             submission.failure_reason if refused else "One linux/amd64 image within the limits."))
    canary = next((job for job in jobs if job["canary"]), None)
    rest = [job for job in jobs if not job["canary"]]

    def job_status(group: list[dict]) -> str:
        if not group:
            return "failed" if refused else ("done" if final else "pending")
        states = {job["state"] for job in group}
        if states <= {"succeeded"}:
            return "done"
        if "failed" in states:
            return "failed"
        if states <= {"pending", "cancelled"}:
            return "pending"
        return "active"

    canary_detail = "Runs once the image checks pass." if not final else ""
    if canary is not None:
        canary_detail = f"{canary['cases']} case(s): {canary['state_label']}"
        if canary["exit_reason"] and canary["exit_reason"] != "ok":
            canary_detail += f" — {canary['exit_reason_label']}. {canary['detail']}"
    stages.append(_stage("canary", "Canary", job_status([canary] if canary else []), canary_detail))
    ran = sum(job["state"] in ("scoring", "succeeded", "failed", "cancelled") for job in rest)
    stages.append(_stage("fanout", "Fan-out", job_status(rest) if rest else ("done" if canary and final else "pending"),
                         f"{ran} of {len(rest)} job(s) ran" if rest
                         else "No further jobs." if canary else "The other jobs run once the canary passes."))
    scoring = sum(job["state"] == "scoring" for job in jobs)
    scored = sum(job["state"] == "succeeded" for job in jobs)
    scoring_status = "active" if scoring else ("done" if jobs and scored == len(jobs) else "pending")
    if final and scoring_status == "pending":
        scoring_status = "failed" if state == Submission.State.FAILED else "done"
    stages.append(_stage("scoring", "Scoring", scoring_status,
                         f"{scored} of {len(jobs)} job(s) scored" if jobs else "Each job is scored as it ends."))
    done_status = {"completed": "done", "failed": "failed", "cancelled": "failed"}.get(state, "pending")
    stages.append(_stage("done", "Done", done_status, submission.failure_reason or submission.get_state_display()))
    return stages


def submission_live(*, submission: Submission) -> dict:
    """The JSON the team's submission page polls."""
    jobs = submission_selectors.job_summaries(
        submission=submission, include_logs=submission.phase.show_logs, include_last_line=submission.phase.show_logs
    )
    body = {
        "id": submission.pk,
        "state": submission.state,
        "state_label": submission.get_state_display(),
        "final": submission.state in ("completed", "failed", "cancelled"),
        "failure_reason": submission.failure_reason,
        "stages": submission_stages(submission=submission, jobs=jobs),
        "jobs": jobs,
    }
    if submission.state == Submission.State.COMPLETED:
        body["results"] = submission_selectors.results_summary(submission=submission)
    return body


def paired_differences(*, first: Submission, second: Submission) -> list[dict]:
    """Organ by organ, `second − first` over the cases both were scored on (paired by case id, never by row).

    NaN (organ absent from the reference) pairs are left out and counted as `n`; a missing case is not paired.
    """
    values: dict[int, dict[tuple[str, str], tuple[float | None, float | None]]] = {}
    for submission in (first, second):
        rows = CaseResult.objects.filter(submission=submission).values_list(
            "case__case_id", "organ__name", "dsc", "nsd")
        values[submission.pk] = {(case, organ): (dsc, nsd) for case, organ, dsc, nsd in rows}
    organs: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"dsc": [], "nsd": []})
    order: list[str] = []
    for (case, organ), (dsc_a, nsd_a) in sorted(values[first.pk].items()):
        if organ not in order:
            order.append(organ)
        other = values[second.pk].get((case, organ))
        if other is None:
            continue
        for metric, a, b in (("dsc", dsc_a, other[0]), ("nsd", nsd_a, other[1])):
            if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
                organs[organ][metric].append(b - a)
    result = []
    for organ in order:
        row: dict = {"organ": organ}
        for metric in ("dsc", "nsd"):
            diffs = organs[organ][metric]
            row[metric] = {
                "n": len(diffs),
                "mean": sum(diffs) / len(diffs) if diffs else None,
                "better": sum(d > 0 for d in diffs),
                "worse": sum(d < 0 for d in diffs),
            }
        result.append(row)
    return result
