"""Who may call what: anonymous, another team, a read-only token, a revoked and an expired token, for every
API endpoint; anonymous and another team's member for every portal page of a team."""

import pytest
from django.contrib.auth.models import User

from teams.models import Membership
from tests.api.conftest import persona
from tests.factories import PhaseFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    alice, bob = persona("alice"), persona("bob")
    phase = PhaseFactory(slug="final", show_logs=True)
    mine = SubmissionFactory(team=alice.team, phase=phase)
    return alice, bob, phase, mine


def api_reads(phase, submission) -> list[str]:
    return [
        "/api/v1/phases/", f"/api/v1/phases/{phase.slug}/submissions/", f"/api/v1/phases/{phase.slug}/leaderboard/",
        f"/api/v1/phases/{phase.slug}/quota/", f"/api/v1/phases/{phase.slug}/samples/", "/api/v1/submissions/",
        f"/api/v1/submissions/{submission.pk}/", f"/api/v1/submissions/{submission.pk}/logs/",
    ]


def test_every_api_read_refuses_no_revoked_or_expired_token_and_accepts_a_read_token(client, world):
    alice, _, phase, mine = world
    for path in api_reads(phase, mine):
        assert client.get(path).status_code == 401, path
        revoked = client.get(path, **alice.revoked)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"], path
        expired = client.get(path, **alice.expired)
        assert expired.status_code == 401 and "expired" in expired.json()["detail"], path
        assert client.get(path, **alice.read).status_code == 200, path


def test_writes_need_a_submit_token(client, world):
    alice, _, phase, _ = world
    body = {"phase": phase.slug, "algorithm": "unet", "size": 10}
    refused = client.post("/api/v1/uploads/", body, content_type="application/json", **alice.read)
    assert refused.status_code == 403 and "only read" in refused.json()["detail"]
    tar = client.generic("POST", f"/api/v1/phases/{phase.slug}/submissions/", b"x" * 10,
                         content_type="application/x-tar", **alice.read)
    assert tar.status_code == 403
    for token in (alice.revoked, alice.expired, {}):
        assert client.post("/api/v1/uploads/", body, content_type="application/json", **token).status_code == 401
    assert client.post("/api/v1/uploads/", body, content_type="application/json", **alice.submit).status_code == 201


def test_another_team_sees_none_of_alices_submissions(client, world):
    _, bob, _, mine = world
    for suffix in ("", "results/", "logs/"):
        assert client.get(f"/api/v1/submissions/{mine.pk}/{suffix}", **bob.submit).status_code == 404
    assert client.get("/api/v1/submissions/", **bob.submit).json()["count"] == 0


def test_a_token_is_throttled_with_a_clear_message(client, world, settings):
    alice, _, _, _ = world
    settings.API_RATE_PER_TOKEN = "3/minute"
    from django.core.cache import cache

    cache.clear()
    codes = [client.get("/api/v1/phases/", **alice.read).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    throttled = client.get("/api/v1/phases/", **alice.read)
    assert "Too many requests with this API token" in throttled.json()["detail"] and throttled["Retry-After"]
    assert client.get("/api/v1/phases/", **alice.submit).status_code == 200  # per token, not per team
    cache.clear()


def test_portal_pages_of_a_team_are_for_its_members_only(client, world):
    alice, bob, phase, mine = world
    carol = User.objects.create_user("carol", password="pw-carol-123")
    Membership.objects.create(team=bob.team, user=carol)
    other = SubmissionFactory(team=alice.team, phase=phase)
    pages = [f"/portal/teams/{alice.team.slug}/", f"/portal/teams/{alice.team.slug}/submit/",
             f"/portal/teams/{alice.team.slug}/phases/{phase.slug}/", f"/portal/submissions/{mine.pk}/",
             f"/portal/submissions/{mine.pk}/status.json", f"/portal/submissions/{mine.pk}/compare/{other.pk}/"]
    for page in pages:
        anonymous = client.get(page)
        assert anonymous.status_code == 302 and "/portal/login/" in anonymous["Location"], page
    client.force_login(carol)
    for page in pages:
        assert client.get(page).status_code == 404, page
    for action in ("tokens/", "invite/", "leave/"):
        assert client.post(f"/portal/teams/{alice.team.slug}/{action}", {"name": "x", "scope": "submit"}).status_code == 404
    dave = User.objects.create_user("dave", password="pw-dave-123")
    Membership.objects.create(team=alice.team, user=dave, role=Membership.Role.OWNER)
    client.force_login(dave)
    for page in pages:
        assert client.get(page).status_code == 200, page
