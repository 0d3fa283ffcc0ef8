"""REST API: token authentication, upload refusals a team can act on, and who may read what."""

import pytest

from submissions.models import AlgorithmImage, Submission
from teams import services as team_services
from tests.factories import PhaseFactory, SubmissionFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    team = TeamFactory(slug="alice")
    return team, {"HTTP_AUTHORIZATION": f"Bearer {team_services.token_issue(team=team)}"}


def test_requests_without_a_valid_token_are_refused_with_advice(client):
    response = client.get("/api/v1/phases/")
    assert response.status_code == 401
    response = client.get("/api/v1/phases/", HTTP_AUTHORIZATION="Bearer ts_wrong")
    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["detail"]


def test_tokens_are_stored_only_as_hashes(alice):
    team, headers = alice
    secret = headers["HTTP_AUTHORIZATION"].split()[1]
    assert not team.tokens.filter(key_hash=secret).exists()
    assert team.tokens.count() == 1


def test_upload_must_be_a_tar_body(client, alice):
    _, headers = alice
    phase = PhaseFactory()
    response = client.post(f"/api/v1/phases/{phase.slug}/submissions/", data={"a": "b"}, **headers)
    assert response.status_code == 400
    assert "application/x-tar" in str(response.json())


def test_empty_upload_is_refused(client, alice):
    _, headers = alice
    phase = PhaseFactory()
    response = client.generic("POST", f"/api/v1/phases/{phase.slug}/submissions/", b"", CONTENT_LENGTH="0",
                              content_type="application/x-tar", HTTP_X_TOUCHSTONE_ALGORITHM="unet", **headers)
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]


def test_upload_streams_to_disk_and_creates_a_submission(client, alice, django_capture_on_commit_callbacks):
    team, headers = alice
    phase = PhaseFactory()
    body = b"not really a tar, validated later by Docker" * 1000
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.generic("POST", f"/api/v1/phases/{phase.slug}/submissions/", body,
                                  content_type="application/x-tar", HTTP_X_TOUCHSTONE_ALGORITHM="unet", **headers)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["state"] == Submission.State.VALIDATING and data["algorithm"] == "unet"
    image = AlgorithmImage.objects.get(team=team)
    assert image.size_bytes == len(body)
    assert len(callbacks) == 1


def test_teams_only_see_their_own_submissions_and_logs_only_where_allowed(client, alice):
    team, headers = alice
    mine = SubmissionFactory(team=team, phase=PhaseFactory(show_logs=False))
    theirs = SubmissionFactory()
    assert client.get(f"/api/v1/submissions/{mine.pk}/", **headers).status_code == 200
    assert client.get(f"/api/v1/submissions/{theirs.pk}/", **headers).status_code == 404
    logs = client.get(f"/api/v1/submissions/{mine.pk}/logs/", **headers)
    assert logs.status_code == 403 and "does not share container logs" in logs.json()["detail"]
    results = client.get(f"/api/v1/submissions/{mine.pk}/results/", **headers)
    assert results.status_code == 409
    assert [s["id"] for s in client.get("/api/v1/submissions/", **headers).json()["results"]] == [mine.pk]


def test_leaderboard_gives_headline_intervals_rank_ranges_and_on_request_every_statistic(client, alice):
    from tests.platform.scored_phase import scored_phase

    _, headers = alice
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    board = client.get(f"/api/v1/phases/{phase.slug}/leaderboard/", **headers).json()
    assert board["parameters"]["n_bootstrap"] == 50 and "statistics" not in board
    first = board["rows"][0]
    low, high = first["dsc"]["ci"]
    assert low < first["dsc"]["headline"] < high
    assert first["rank_range"]["low"] == 1 and 0 < first["rank_range"]["first"] <= 1
    full = client.get(f"/api/v1/phases/{phase.slug}/leaderboard/?statistics=full", **headers).json()
    assert set(full["statistics"]["metrics"]) == {"dsc", "nsd"}
    assert full["statistics"]["metrics"]["dsc"]["significance"]["liver"]["order"]


@pytest.mark.parametrize("show_logs", [False, True])
def test_container_output_reaches_only_its_team_and_only_where_the_phase_shares_logs(client, alice, show_logs):
    from submissions.models import ExitReason, Job
    from tests.factories import JobFactory

    team, headers = alice
    secret = "ValueError: voxel 12,40,7 of case hrh_000 is -1024 HU"
    submission = SubmissionFactory(team=team, phase=PhaseFactory(show_logs=show_logs), state=Submission.State.FAILED)
    JobFactory(submission=submission, state=Job.State.FAILED, exit_reason=ExitReason.CRASHED, exit_code=1,
               detail="The container exited with code 1.", log_tail=f"processing\n{secret}\n", last_output_line=secret)
    mine = client.get(f"/api/v1/submissions/{submission.pk}/", **headers).json()
    assert mine["jobs"][0]["detail"] == "The container exited with code 1."
    assert (mine["jobs"][0].get("last_output_line") == secret) is show_logs
    assert (secret in str(mine)) is show_logs
    assert secret not in client.get(f"/submissions/{submission.pk}/").content.decode()  # the public page
