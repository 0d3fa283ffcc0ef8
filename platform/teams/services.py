"""Teams, their members, invitations and API tokens."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from benchmarks.models import Phase
from leaderboards import tasks as leaderboard_tasks
from leaderboards.models import PublicPick
from submissions.models import Submission
from teams.models import ApiToken, Invitation, Membership, Team


@transaction.atomic
def team_create(*, name: str, slug: str | None = None) -> Team:
    team, _ = Team.objects.get_or_create(slug=slug or slugify(name), defaults={"name": name})
    return team


def token_issue(*, team: Team, name: str = "cli") -> str:
    """Create a token and return its secret, which is shown once and stored only as a hash."""
    key = ApiToken.new_key()
    ApiToken.objects.create(team=team, name=name, key_hash=ApiToken.hash_key(key))
    return key


class PortalRefused(Exception):
    """A portal action that cannot be done; the message says why and what to do."""


def team_create_for(*, user, name: str) -> Team:
    """A new team with `user` as its owner. Refuses a name whose slug is taken."""
    slug = slugify(name)[:50]
    if not slug:
        raise PortalRefused("Give the team a name with at least one letter or digit.")
    with transaction.atomic():
        if Team.objects.filter(slug=slug).exists():
            raise PortalRefused(f"A team called '{slug}' exists already. Pick another name, or ask its owner "
                                "for an invitation link.")
        team = Team.objects.create(slug=slug, name=name.strip())
        Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    return team


def token_create(*, team: Team, user, name: str, scope: str, expires_in_days: int | None) -> str:
    """Issue a token with a scope and an optional expiry; returns the secret, shown once."""
    key = ApiToken.new_key()
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    ApiToken.objects.create(team=team, name=name, key_hash=ApiToken.hash_key(key), scope=scope,
                            created_by=user, expires_at=expires_at)
    return key


def token_revoke(*, team: Team, token_id: int) -> None:
    ApiToken.objects.filter(team=team, pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())


def invitation_create(*, team: Team, user) -> str:
    """A join link's key (shown once); valid `settings.INVITATION_DAYS` days."""
    key = secrets.token_urlsafe(24)
    Invitation.objects.create(team=team, created_by=user, key_hash=ApiToken.hash_key(key),
                              expires_at=timezone.now() + timedelta(days=settings.INVITATION_DAYS))
    return key


def invitation_find(*, key: str) -> Invitation:
    invitation = Invitation.objects.select_related("team").filter(key_hash=ApiToken.hash_key(key)).first()
    if invitation is None or invitation.revoked_at is not None:
        raise PortalRefused("This invitation link is not valid. Ask the team's owner for a new one.")
    if invitation.expires_at <= timezone.now():
        raise PortalRefused("This invitation link has expired. Ask the team's owner for a new one.")
    return invitation


def invitation_accept(*, key: str, user) -> Team:
    invitation = invitation_find(key=key)
    Membership.objects.get_or_create(team=invitation.team, user=user, defaults={"role": Membership.Role.MEMBER})
    return invitation.team


@transaction.atomic
def membership_leave(*, team: Team, user) -> None:
    """Leave a team. Its last owner cannot leave while others remain: make another member owner first."""
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if membership is None:
        return
    others = Membership.objects.filter(team=team).exclude(user=user)
    if (membership.role == Membership.Role.OWNER and others.exists()
            and not others.filter(role=Membership.Role.OWNER).exists()):
        raise PortalRefused("You are the team's only owner. Make another member owner before you leave.")
    membership.delete()


def member_promote(*, team: Team, user_id: int) -> None:
    Membership.objects.filter(team=team, user_id=user_id).update(role=Membership.Role.OWNER)


def public_pick_set(*, team: Team, phase: Phase, submission_id: int) -> PublicPick:
    """The team's one leaderboard row on a phase where teams pick it: one of its own completed, not
    disqualified submissions to that phase. The phase's leaderboard is recomputed after the change commits."""
    if phase.public_row != Phase.PublicRow.TEAM_PICK:
        raise PortalRefused(f"On {phase.name} the leaderboard shows {Phase.PublicRow(phase.public_row).label.lower()}; "
                            "teams do not pick their row there.")
    submission = Submission.objects.filter(pk=submission_id, team=team, phase=phase).first()
    if submission is None:
        raise PortalRefused(f"Submission #{submission_id} is not one of {team.name}'s submissions to {phase.name}.")
    if submission.state != Submission.State.COMPLETED:
        raise PortalRefused(f"Submission #{submission.pk} is {submission.get_state_display().lower()}: only a completed "
                            "submission can be the team's public row.")
    if hasattr(submission, "disqualification"):
        raise PortalRefused(f"Submission #{submission.pk} was disqualified by the organizers and cannot be ranked.")
    with transaction.atomic():
        pick, _ = PublicPick.objects.update_or_create(team=team, phase=phase, defaults={"submission": submission})
        transaction.on_commit(lambda: leaderboard_tasks.compute_leaderboard.delay(phase_id=phase.pk), robust=True)
    return pick
