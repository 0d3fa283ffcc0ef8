"""A team picks its public row on the portal: only on phases whose `public_row` is the team's pick, only its
members, only one of its own completed submissions to that phase.

Personas: alice's team has a completed and a failed submission; bob is in a rival team.
"""

import pytest
from django.contrib.auth.models import User

from benchmarks.models import Phase
from leaderboards.models import Disqualification, PublicPick
from leaderboards.selectors import ranked_submissions
from submissions.models import Submission
from teams.models import Membership
from tests.factories import PhaseFactory, SubmissionFactory, TeamFactory

pytestmark = pytest.mark.django_db


def member(name: str, team) -> User:
    user = User.objects.create_user(name, password="unused-in-tests")
    Membership.objects.create(team=team, user=user)
    return user


@pytest.fixture
def world():
    phase = PhaseFactory(slug="final", public_row=Phase.PublicRow.TEAM_PICK)
    alice_team, bob_team = TeamFactory(slug="alice-lab"), TeamFactory(slug="bob-lab")
    alice, bob = member("alice", alice_team), member("bob", bob_team)
    first, latest = (SubmissionFactory(team=alice_team, phase=phase, state=Submission.State.COMPLETED) for _ in "ab")
    failed = SubmissionFactory(team=alice_team, phase=phase, state=Submission.State.FAILED)
    rival = SubmissionFactory(team=bob_team, phase=phase, state=Submission.State.COMPLETED)
    return {"phase": phase, "team": alice_team, "alice": alice, "bob": bob, "first": first, "latest": latest,
            "failed": failed, "rival": rival}


def pick(client, world, submission_id, team_slug="alice-lab"):
    return client.post(f"/portal/teams/{team_slug}/phases/final/pick/", {"submission": submission_id}, follow=True)


def test_a_member_picks_an_earlier_completed_submission_and_the_board_ranks_it(client, world,
                                                                               django_capture_on_commit_callbacks):
    client.force_login(world["alice"])
    page = client.get("/portal/teams/alice-lab/phases/final/").content.decode()
    assert f'class="pick" data-submission="{world["first"].pk}"' in page
    assert f'class="pick" data-submission="{world["failed"].pk}"' not in page  # only completed ones
    assert world["latest"] in ranked_submissions(phase=world["phase"])  # none picked: the latest stands

    with django_capture_on_commit_callbacks() as callbacks:
        response = pick(client, world, world["first"].pk)
    assert response.status_code == 200
    assert f"#{world['first'].pk} is now" in response.content.decode()
    assert PublicPick.objects.get(team=world["team"], phase=world["phase"]).submission == world["first"]
    ranked = ranked_submissions(phase=world["phase"])
    assert world["first"] in ranked and world["latest"] not in ranked
    assert len(callbacks) == 1  # the leaderboard is recomputed once the pick is committed

    pick(client, world, world["latest"].pk)  # picking again moves the one row
    assert PublicPick.objects.get(team=world["team"], phase=world["phase"]).submission == world["latest"]


@pytest.mark.parametrize("which, words", [
    ("failed", "only a completed submission"),
    ("rival", "is not one of"),
    ("nonsense", "is not one of"),
])
def test_a_pick_of_what_the_team_may_not_pick_is_refused_with_a_reason(client, world, which, words):
    client.force_login(world["alice"])
    submission_id = "x" if which == "nonsense" else world[which].pk
    response = pick(client, world, submission_id)
    assert words in response.content.decode()
    assert not PublicPick.objects.exists()


def test_a_disqualified_submission_cannot_be_picked(client, world):
    Disqualification.objects.create(submission=world["first"], reason="Trained on the test set.")
    client.force_login(world["alice"])
    assert "disqualified" in pick(client, world, world["first"].pk).content.decode()
    assert not PublicPick.objects.exists()


def test_only_the_teams_members_may_pick(client, world):
    assert pick(client, world, world["first"].pk).redirect_chain[0][0].startswith("/portal/login/")
    client.force_login(world["bob"])
    assert pick(client, world, world["first"].pk).status_code == 404  # another team: nothing says it exists
    assert pick(client, world, world["first"].pk, team_slug="bob-lab").status_code == 200  # his own team: refused
    assert client.get("/portal/teams/alice-lab/phases/final/pick/").status_code in (404, 405)
    assert not PublicPick.objects.exists()


def test_phases_ranking_latest_or_best_offer_no_pick(client, world):
    Phase.objects.filter(pk=world["phase"].pk).update(public_row=Phase.PublicRow.BEST)
    client.force_login(world["alice"])
    assert 'class="pick"' not in client.get("/portal/teams/alice-lab/phases/final/").content.decode()
    assert "teams do not pick their row there" in pick(client, world, world["first"].pk).content.decode()
    assert not PublicPick.objects.exists()


def test_sign_up_returns_only_to_a_page_of_this_site(client):
    form = {"username": "dave", "email": "dave@example.org", "password1": "a long passphrase",
            "password2": "a long passphrase"}
    elsewhere = client.post("/portal/signup/?next=https://evil.example/", form)
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/portal/"
    client.logout()
    back = client.post("/portal/signup/?next=/portal/join/abc/", {**form, "username": "erin"})
    assert back["Location"] == "/portal/join/abc/"
