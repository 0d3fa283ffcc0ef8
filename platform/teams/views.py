"""The team portal: sign up, teams and members, tokens, browser submissions, live progress, comparisons.

Every page about a team answers 404 to anyone who is not a member of it (nothing says the thing exists).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from api import services as upload_services
from benchmarks.models import Phase
from submissions.models import Submission
from teams import selectors, services
from teams.forms import SignUpForm, TeamForm, TokenForm
from teams.models import Membership, Team


def _member_team(request, slug: str) -> tuple[Team, Membership]:
    team = get_object_or_404(Team, slug=slug)
    membership = selectors.membership_of(user=request.user, team=team)
    if membership is None:
        raise Http404("No such team of yours.")
    return team, membership


def _own_submission(request, submission_id: int) -> Submission:
    submission = get_object_or_404(Submission.objects.select_related("phase", "team", "image"), pk=submission_id)
    if selectors.membership_of(user=request.user, team=submission.team) is None:
        raise Http404("No such submission of your team.")
    return submission


def signup(request):
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. Create a team, or open an invitation link.")
        wanted = request.POST.get("next") or request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
            return redirect(wanted)  # e.g. back to the invitation link that sent a new person here
        return redirect("portal-home")
    return render(request, "teams/form.html", {"form": form, "title": "Sign up", "submit": "Sign up",
                                               "form_id": "signup-form", "next": request.GET.get("next", "")})


@login_required
def home(request):
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create_for(user=request.user, name=form.cleaned_data["name"])
        except services.PortalRefused as refusal:
            form.add_error("name", str(refusal))
        else:
            return redirect("portal-team", slug=team.slug)
    return render(request, "teams/home.html", {"memberships": selectors.teams_of(user=request.user), "form": form})


@login_required
def team(request, slug: str):
    team, membership = _member_team(request, slug)
    phases = [{**upload_services.quota(team=team, phase=phase), "phase": phase}
              for phase in Phase.objects.select_related("benchmark").order_by("slug")]
    return render(request, "teams/team.html", {
        "team": team, "membership": membership, "is_owner": membership.role == Membership.Role.OWNER,
        "members": team.membership_set.select_related("user").order_by("user__username"),
        "tokens": team.tokens.order_by("-created_at"), "token_form": TokenForm(), "phases": phases,
        "submissions": team.submissions.select_related("phase").order_by("-created_at")[:20],
        "secret": request.session.pop("portal_secret", None), "now": timezone.now(),
    })


@login_required
@require_POST
def token_create(request, slug: str):
    team, _ = _member_team(request, slug)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The token was not created: " + "; ".join(
            f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
        return redirect("portal-team", slug=slug)
    key = services.token_create(team=team, user=request.user, **form.cleaned_data)
    request.session["portal_secret"] = {"kind": "token", "value": key, "name": form.cleaned_data["name"]}
    return redirect(reverse("portal-team", args=[slug]) + "#tokens")


@login_required
@require_POST
def token_revoke(request, slug: str, token_id: int):
    team, _ = _member_team(request, slug)
    services.token_revoke(team=team, token_id=token_id)
    messages.success(request, "Token revoked: requests with it are refused from now on.")
    return redirect(reverse("portal-team", args=[slug]) + "#tokens")


@login_required
@require_POST
def invite(request, slug: str):
    team, membership = _member_team(request, slug)
    if membership.role != Membership.Role.OWNER:
        messages.error(request, "Only the team's owners can invite members.")
        return redirect("portal-team", slug=slug)
    key = services.invitation_create(team=team, user=request.user)
    link = request.build_absolute_uri(reverse("portal-join", args=[key]))
    request.session["portal_secret"] = {"kind": "invitation", "value": link}
    return redirect(reverse("portal-team", args=[slug]) + "#members")


def join(request, key: str):
    try:
        invitation = services.invitation_find(key=key)
    except services.PortalRefused as refusal:
        return render(request, "teams/message.html", {"title": "Invitation", "message": str(refusal)}, status=404)
    if not request.user.is_authenticated:
        return render(request, "teams/join.html", {"team": invitation.team, "next": request.path})
    if request.method == "POST":
        team = services.invitation_accept(key=key, user=request.user)
        messages.success(request, f"You joined {team.name}.")
        return redirect("portal-team", slug=team.slug)
    return render(request, "teams/join.html", {"team": invitation.team})


@login_required
@require_POST
def leave(request, slug: str):
    team, _ = _member_team(request, slug)
    try:
        services.membership_leave(team=team, user=request.user)
    except services.PortalRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("portal-team", slug=slug)
    messages.success(request, f"You left {team.name}.")
    return redirect("portal-home")


@login_required
@require_POST
def promote(request, slug: str, user_id: int):
    team, membership = _member_team(request, slug)
    if membership.role != Membership.Role.OWNER:
        raise Http404("Only owners can change roles.")
    services.member_promote(team=team, user_id=user_id)
    return redirect(reverse("portal-team", args=[slug]) + "#members")


@login_required
def submit(request, slug: str):
    team, _ = _member_team(request, slug)
    phases = [{**upload_services.quota(team=team, phase=phase), "phase": phase}
              for phase in Phase.objects.filter(is_open=True).order_by("slug")]
    return render(request, "teams/submit.html", {"team": team, "phases": phases,
                                                 "max_bytes": settings.MAX_IMAGE_UPLOAD_BYTES})


@login_required
def history(request, slug: str, phase_slug: str):
    team, _ = _member_team(request, slug)
    phase = get_object_or_404(Phase, slug=phase_slug)
    return render(request, "teams/history.html", {
        "team": team, "phase": phase, "team_picks": phase.public_row == Phase.PublicRow.TEAM_PICK,
        "rows": selectors.phase_history(team=team, phase=phase),
    })


@login_required
@require_POST
def public_pick(request, slug: str, phase_slug: str):
    team, _ = _member_team(request, slug)
    phase = get_object_or_404(Phase, slug=phase_slug)
    try:
        submission_id = int(request.POST.get("submission", ""))
    except ValueError:
        submission_id = 0
    try:
        services.public_pick_set(team=team, phase=phase, submission_id=submission_id)
    except services.PortalRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"#{submission_id} is now {team.name}'s row on the {phase.name} leaderboard. "
                         "The leaderboard is being recomputed.")
    return redirect("portal-history", slug=slug, phase_slug=phase_slug)


@login_required
def submission(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    return render(request, "teams/submission.html", {"submission": submission, "team": submission.team,
                                                     "live": selectors.submission_live(submission=submission)})


@login_required
def submission_status(request, submission_id: int):
    submission = _own_submission(request, submission_id)
    return JsonResponse(selectors.submission_live(submission=submission))


@login_required
def compare(request, first_id: int, second_id: int):
    first, second = _own_submission(request, first_id), _own_submission(request, second_id)
    if first.team_id != second.team_id or first.phase_id != second.phase_id:
        raise Http404("Compare two submissions of one team to one phase.")
    return render(request, "teams/compare.html", {
        "first": first, "second": second, "team": first.team,
        "rows": selectors.paired_differences(first=first, second=second),
    })
