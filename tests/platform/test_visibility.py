"""Who sees what (DESIGN.md): anonymous visitors, a rival team, the own team (session or API token) and staff,
on public, embargoed and published leaderboards, submission pages, per-case results and engine errors."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from benchmarks.models import Phase
from leaderboards import services
from leaderboards.selectors import published_snapshot
from submissions.models import Job, Submission
from teams import services as team_services
from teams.models import Membership, Team
from tests.factories import JobFactory
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db

NAMES = [name.split(" / ")[0] for name in ALGORITHMS]  # Alice Lab, Bob Lab, Carol Lab, Dan Lab


@pytest.fixture
def board():
    """The scored phase, embargoed, with alice (member of Alice Lab), bob (Bob Lab) and staff charlie."""
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    Phase.objects.filter(pk=phase.pk).update(leaderboard_visibility=Phase.Visibility.EMBARGOED)
    phase.refresh_from_db()
    users = {}
    for name, team_slug in (("alice", "alice-lab"), ("bob", "bob-lab")):
        users[name] = get_user_model().objects.create_user(name, password="x")
        Membership.objects.create(team=Team.objects.get(slug=team_slug), user=users[name])
    users["charlie"] = get_user_model().objects.create_user("charlie", password="x", is_staff=True)
    return phase, users


def own(team_slug: str, phase: Phase) -> Submission:
    return Submission.objects.get(team__slug=team_slug, phase=phase)


def token_headers(team_slug: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {team_services.token_issue(team=Team.objects.get(slug=team_slug))}"}


def test_an_embargoed_board_shows_nobody_the_other_teams_numbers(client, board):
    phase, users = board
    page = client.get(f"/phases/{phase.slug}/").content.decode()
    assert "embargoed until the organizers publish it" in page
    assert not any(name in page for name in NAMES)
    assert client.get(f"/submissions/{own('alice-lab', phase).pk}/").status_code == 404
    assert client.get(f"/phases/{phase.slug}/export/leaderboard.csv").status_code == 404

    client.force_login(users["alice"])
    response = client.get(f"/phases/{phase.slug}/")
    assert [row["team"] for row in response.context["rows"]] == ["Alice Lab"]
    assert response.context["rows"][0]["rank"] is None  # a rank would say where the others stand
    assert response.context["figures"] == {} and response.context["parameters"] is None
    page = response.content.decode()
    assert "Alice Lab" in page and not any(name in page for name in NAMES[1:])
    assert client.get(f"/submissions/{own('bob-lab', phase).pk}/").status_code == 404
    assert client.get(f"/submissions/{own('alice-lab', phase).pk}/").status_code == 200

    api = client.get(f"/api/v1/phases/{phase.slug}/leaderboard/?statistics=full", **token_headers("bob-lab")).json()
    assert [row["team"] for row in api["rows"]] == ["Bob Lab"]
    assert api["scope"] == "own_rows" and api["statistics"] == {} and api["parameters"] == {}
    assert client.get(f"/api/v1/phases/{phase.slug}/export/", **token_headers("carol-lab")).status_code == 200
    client.logout()
    client.force_login(users["charlie"])
    assert len(client.get(f"/phases/{phase.slug}/").context["rows"]) == len(ALGORITHMS)


def test_an_embargoed_board_gives_a_team_no_rank_on_its_own_submission_page(client, board):
    """The own-rows board drops ranks: the submission page must not show the live rank "3 of 4" either."""
    phase, users = board
    client.force_login(users["alice"])
    response = client.get(f"/submissions/{own('alice-lab', phase).pk}/")
    assert response.status_code == 200
    assert response.context["standing"] is None
    assert 'id="standing"' not in response.content.decode()
    client.logout()
    client.force_login(users["charlie"])
    standing = client.get(f"/submissions/{own('alice-lab', phase).pk}/").context["standing"]
    assert standing["of"] == len(ALGORITHMS) and standing["rank"] is not None


def test_after_publishing_everyone_sees_the_frozen_snapshot(client, board):
    phase, users = board
    published = services.snapshot_publish(phase_id=phase.pk, user=users["charlie"])
    assert published.content_sha256 == services.content_sha256(services.snapshot_content(published))
    assert published.image_digests.keys() == {str(pk) for pk in published.submission_ids}
    assert published.settings["benchmark"]["bootstrap_samples"] == phase.benchmark.bootstrap_samples
    frozen_rows = [(row["team"], row["dsc"]["headline"]) for row in published.rows]

    # A later change (Dan Lab's submission failed on a rerun) only moves the live board.
    Submission.objects.filter(team__slug="dan-lab").update(state=Submission.State.FAILED)
    live = services.snapshot_compute(phase_id=phase.pk, n_bootstrap=50)
    assert len(live.rows) == len(ALGORITHMS) - 1

    response = client.get(f"/phases/{phase.slug}/")
    assert [(row["team"], row["dsc"]["headline"]) for row in response.context["rows"]] == frozen_rows
    page = response.content.decode()
    assert published.content_sha256 in page and "Published leaderboard" in page
    api = client.get(f"/api/v1/phases/{phase.slug}/leaderboard/", **token_headers("bob-lab")).json()
    assert [(row["team"], row["dsc"]["headline"]) for row in api["rows"]] == frozen_rows
    assert api["publication"]["content_sha256"] == published.content_sha256
    snapshot_json = client.get(f"/phases/{phase.slug}/export/snapshot.json").json()
    assert snapshot_json["statistics"] == published.statistics
    assert snapshot_json["publication"]["evaluator_version"] == published.evaluator_version
    client.force_login(users["charlie"])  # staff watch the live board
    assert len(client.get(f"/phases/{phase.slug}/").context["rows"]) == len(ALGORITHMS) - 1
    assert published_snapshot(phase=phase).pk == published.pk


def test_a_private_board_cannot_be_published():
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    Phase.objects.filter(pk=phase.pk).update(leaderboard_visibility=Phase.Visibility.PRIVATE)
    with pytest.raises(services.PublicationRefused, match="private leaderboard"):
        services.snapshot_publish(phase_id=phase.pk)


def test_the_anonymous_submission_page_shows_only_the_public_row(client, board):
    phase, users = board
    Phase.objects.filter(pk=phase.pk).update(leaderboard_visibility=Phase.Visibility.PUBLIC)
    submission = own("dan-lab", phase)
    Submission.objects.filter(pk=submission.pk).update(failure_reason="One case had no valid output: secret.nii.gz")
    Job.objects.filter(submission=submission).update(
        detail="Wrote /output/secret-name.nii.gz", platform_detail="engine at unix:///var/run/docker.sock"
    )
    page = client.get(f"/submissions/{submission.pk}/").content.decode()
    assert 'id="public-view"' in page and 'id="organ-table"' in page
    for private in ('id="job-table"', "secret", "docker.sock", 'id="site-table"', "Why it failed"):
        assert private not in page
    failed = JobFactory(submission__phase=phase, submission__state=Submission.State.FAILED).submission
    assert client.get(f"/submissions/{failed.pk}/").status_code == 404  # not on the board: nothing public

    client.force_login(users["alice"])  # another team: the public row only
    assert 'id="job-table"' not in client.get(f"/submissions/{submission.pk}/").content.decode()
    client.logout()
    dan = get_user_model().objects.create_user("dan")
    Membership.objects.create(team=submission.team, user=dan)
    client.force_login(dan)  # the own team: jobs, reasons; never the engine's words
    page = client.get(f"/submissions/{submission.pk}/").content.decode()
    assert 'id="job-table"' in page and "secret-name.nii.gz" in page and "Why it failed" in page
    assert "docker.sock" not in page
    client.force_login(users["charlie"])
    assert "docker.sock" in client.get(f"/submissions/{submission.pk}/").content.decode()


def test_per_case_results_only_where_the_phase_shares_them(client, board):
    phase, _ = board
    submission = own("alice-lab", phase)
    url = f"/api/v1/submissions/{submission.pk}/results/"
    response = client.get(url, **token_headers("alice-lab"))
    assert response.status_code == 403 and "does not share per-case results" in response.json()["detail"]
    Phase.objects.filter(pk=phase.pk).update(show_case_results=True)
    cases = client.get(url, **token_headers("alice-lab")).json()["cases"]
    assert len(cases) == submission.results.count()
    assert client.get(url, **token_headers("bob-lab")).status_code == 404  # another team's: not found
