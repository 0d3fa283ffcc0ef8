"""The organizers' dashboard: staff only. Views read through `selectors` and act through `services`."""

from __future__ import annotations

import plotly.graph_objects as go
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from benchmarks.models import Phase
from dashboard import selectors, services
from dashboard.models import AuditEntry
from leaderboards import exports
from leaderboards.charts import to_html
from leaderboards.selectors import latest_snapshot, published_snapshot
from leaderboards.visibility import STAFF
from submissions.models import Job, Submission
from teams.models import Team

Action = AuditEntry.Action

# action -> (what it acts on, the service, the question the confirmation page asks)
ACTIONS = {
    Action.JOB_RERUN: ("job", services.job_rerun, "Run this job again? Its results are removed and a new attempt starts."),
    Action.JOB_CANCEL: ("job", services.job_cancel, "Cancel this job? A running container is stopped."),
    Action.SUBMISSION_RERUN: ("submission", services.submission_rerun, "Run this whole submission again from the canary?"),
    Action.SUBMISSION_CANCEL: ("submission", services.submission_cancel, "Cancel this submission and its unfinished jobs?"),
    Action.SUBMISSION_DISQUALIFY: ("submission", services.submission_disqualify,
                                   "Take this submission off the leaderboard? Its team reads the reason."),
    Action.PHASE_RETRY_PLATFORM_FAILED: ("phase", services.phase_retry_platform_failed,
                                         "Rerun every job of this phase that failed on the platform's side?"),
    Action.SNAPSHOT_RECOMPUTE: ("phase", services.snapshot_recompute, "Recompute this phase's leaderboard now?"),
    Action.PHASE_PUBLISH: ("phase", services.phase_publish,
                           "Publish this phase's leaderboard? A frozen, citable snapshot becomes what everyone sees."),
    Action.TEAM_QUOTA: ("phase", services.team_quota_set, "Change a team's daily submission quota on this phase?"),
}


@staff_member_required
def index(request):
    per_hour = selectors.finished_per_hour()
    hours = selectors.compute_hours()
    charts = {}
    if per_hour:
        figure = go.Figure([
            go.Bar(name=label, x=[row["hour"] for row in per_hour], y=[row.get(key, 0) for row in per_hour])
            for key, label in (("succeeded", "Succeeded"), ("team_side", "Failed: team side"),
                               ("platform_side", "Failed: platform side"), ("cancelled", "Cancelled"))
        ])
        figure.update_layout(title="Jobs ended per hour, by outcome", barmode="stack", height=320)
        charts["per_hour"] = to_html(figure, "chart-per-hour")
    if hours["per_team"]:
        teams = sorted(hours["per_team"])
        figure = go.Figure([
            go.Bar(name=label, x=teams, y=[hours["per_team"][t][key] for t in teams])
            for key, label in (("gpu_hours", "GPU-hours"), ("cpu_hours", "CPU-hours"))
        ])
        figure.update_layout(title="Container hours per team", barmode="group", height=320)
        charts["per_team"] = to_html(figure, "chart-per-team")
    return render(request, "dashboard/index.html", {
        "queues": selectors.queue_depths(),
        "workers": selectors.workers(),
        "jobs_by_state": selectors.jobs_by_state(),
        "job_states": list(Job.State),
        "waiting": selectors.submissions_waiting(),
        "phases": Phase.objects.select_related("benchmark").order_by("benchmark__name", "slug"),
        "hours": hours,
        "charts": charts,
        "audit": AuditEntry.objects.select_related("actor")[:50],
    })


@staff_member_required
def phase(request, slug: str):
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    submissions = (
        Submission.objects.filter(phase=phase).select_related("team", "disqualification").order_by("-created_at")[:200]
    )
    failed_jobs = (
        Job.objects.filter(submission__phase=phase, state=Job.State.FAILED)
        .select_related("submission__team").order_by("-finished_at")[:100]
    )
    teams = Team.objects.filter(submissions__phase=phase).distinct().order_by("name")
    return render(request, "dashboard/phase.html", {
        "phase": phase,
        "submissions": submissions,
        "failed_jobs": failed_jobs,
        "teams": [(team, phase.quota_for(team)) for team in teams],
        "live": latest_snapshot(phase=phase),
        "published": published_snapshot(phase=phase),
        "audit": AuditEntry.objects.filter(target__contains=f"phase {phase.slug}").select_related("actor")[:20],
    })


@staff_member_required
def submission(request, submission_id: int):
    sub = get_object_or_404(Submission.objects.select_related("team", "phase", "image"), pk=submission_id)
    return render(request, "dashboard/submission.html", {
        "submission": sub,
        "jobs": sub.jobs.order_by("index"),
        "disqualification": getattr(sub, "disqualification", None),
        "audit": AuditEntry.objects.filter(target__endswith=f"submission #{sub.pk}").select_related("actor")[:20],
    })


@staff_member_required
def act(request, action: str, target_id: int):
    """GET: a confirmation page asking for the reason. POST: the action, audited; back to where it was asked."""
    if action not in ACTIONS:
        raise Http404
    kind, service, question = ACTIONS[Action(action)]
    target, back = _target(kind, target_id)
    teams = Team.objects.filter(submissions__phase=target).distinct().order_by("name") if action == Action.TEAM_QUOTA else []
    error = None
    if request.method == "POST":
        reason = request.POST.get("reason", "")
        kwargs = {f"{kind}_id": target_id}
        try:
            if action == Action.TEAM_QUOTA:
                kwargs["team_id"] = int(request.POST.get("team", ""))
                kwargs["submissions_per_day"] = int(request.POST.get("submissions_per_day", ""))
            entry = service(actor=request.user, reason=reason, **kwargs)
        except ValueError:
            error = "Choose a team and give the quota as a whole number of submissions per day."
        except services.ActionRefused as refusal:
            error = str(refusal)
        else:
            messages.success(request, f"{entry.get_action_display()}: {entry.outcome}")
            return redirect(back)
    return render(request, "dashboard/confirm.html", {
        "action": Action(action), "question": question, "target": target, "kind": kind, "back": back,
        "error": error, "teams": teams, "reason": request.POST.get("reason", ""),
    }, status=400 if error else 200)


@staff_member_required
def export(request, slug: str):
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    try:
        data = exports.phase_export_zip(phase=phase, viewer=STAFF)
    except exports.ExportRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("dashboard-phase", slug=slug)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{slug}-export.zip"'
    return response


def _target(kind: str, target_id: int):
    if kind == "job":
        job = get_object_or_404(Job.objects.select_related("submission__team"), pk=target_id)
        return job, reverse("dashboard-submission", args=[job.submission_id])
    if kind == "submission":
        sub = get_object_or_404(Submission.objects.select_related("team"), pk=target_id)
        return sub, reverse("dashboard-submission", args=[sub.pk])
    target = get_object_or_404(Phase, pk=target_id)
    return target, reverse("dashboard-phase", args=[target.slug])
