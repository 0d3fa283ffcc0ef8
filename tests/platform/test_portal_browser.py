"""The team portal in a real headless Chromium (Debian's), on the live Django server, PostgreSQL, real Celery
workers and the real Docker engine: a new person joins and submits the baseline image from the browser.

Persona: carol has never seen the platform. She signs up, creates her team, creates a token (shown once),
sends an earlier algorithm (the fragile image) through the API with it, then uploads the baseline in the
browser while her connection drops twice, follows it live to Completed, and compares the two organ by organ.
Screenshots of every page go to test-artifacts/portal/ (git-ignored), for people to look at.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from api.models import Upload
from benchmarks.models import Phase
from leaderboards.models import PublicPick
from submissions.models import CaseResult, Submission
from teams.models import ApiToken, Membership
from tests.conftest import ROOT, SYNTHETIC_PHASE, wait_until

ARTIFACTS = ROOT / "test-artifacts" / "portal"
PHASE = SYNTHETIC_PHASE
PASSWORD = "a long passphrase for carol"

# Every text the upload's status line shows, kept in window.statusLog (it changes faster than a test can look).
STATUS_LOG = """
window.statusLog = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("upload-status");
  if (status) new MutationObserver(() => window.statusLog.push(status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
});
"""

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def phase(synthetic_phase) -> Phase:
    return synthetic_phase


@pytest.fixture(scope="module")
def tars(docker_client, algorithm_images, tmp_path_factory) -> dict[str, Path]:
    """`docker save` tars of the baseline and fragile images, as a team makes them."""
    directory = tmp_path_factory.mktemp("tars")
    paths = {}
    for name, image in algorithm_images.items():
        paths[name] = directory / f"{name}.tar"
        with open(paths[name], "wb") as tar:
            for chunk in docker_client.images.get(image).save(named=True):
                tar.write(chunk)
    return paths


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def api_submit(server: str, token: str, *, phase: str, algorithm: str, tar: Path) -> int:
    """The upload protocol spoken with a team token, as any HTTP client would: open, PUT chunks, complete."""
    def call(method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> dict:
        request = urllib.request.Request(f"{server}/api/v1/{path}", data=body, method=method,
                                         headers={"Authorization": f"Bearer {token}", **(headers or {})})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    size = tar.stat().st_size
    upload = call("POST", "uploads/", json.dumps({"phase": phase, "algorithm": algorithm, "size": size}).encode(),
                  {"Content-Type": "application/json"})
    with open(tar, "rb") as source:
        offset = 0
        while offset < size:
            chunk = source.read(upload["chunk_size"])
            answer = call("PUT", f"uploads/{upload['id']}/", chunk, {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{size}",
            })
            offset = answer["offset"]
    return call("POST", f"uploads/{upload['id']}/complete/")["id"]


def wait_final(submission_id: int, timeout_s: float = 600) -> Submission:
    def final():
        submission = Submission.objects.get(pk=submission_id)
        return submission if submission.state in Submission.FINAL_STATES else None

    return wait_until(final, timeout_s=timeout_s, what=f"submission {submission_id} to finish", interval_s=1)


def organ_differences(first: Submission, second: Submission) -> dict[str, float]:
    """Mean DSC difference (second − first) per organ, paired by case id: the test's own computation."""
    scores = {
        s.pk: {(r.case.case_id, r.organ.name): r.dsc for r in CaseResult.objects.filter(submission=s)
               .select_related("case", "organ")}
        for s in (first, second)
    }
    paired: dict[str, list[float]] = {}
    for key, before in scores[first.pk].items():
        after = scores[second.pk].get(key)
        if before is not None and after is not None and not (math.isnan(before) or math.isnan(after)):
            paired.setdefault(key[1], []).append(after - before)
    return {organ: sum(values) / len(values) for organ, values in paired.items()}


def test_a_new_person_signs_up_submits_in_the_browser_follows_it_live_and_compares(
    phase, live_server, page, tars
):
    Phase.objects.filter(pk=phase.pk).update(public_row=Phase.PublicRow.TEAM_PICK)

    # The site's nav leads to the portal; carol signs up.
    page.goto(f"{live_server.url}/")
    page.click("header.top >> text=Sign in")
    page.click("text=Sign up")
    page.wait_for_selector("#signup-form")
    screenshot(page, "signup")
    page.fill("#id_username", "carol")
    page.fill("#id_email", "carol@example.org")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#team-form")
    assert "carol" in page.locator("header.top").inner_text()
    screenshot(page, "home")

    # A team of her own, with her as its owner.
    page.fill("#team-form input[name=name]", "Carol Lab")
    page.click("#team-form button[type=submit]")
    page.wait_for_selector("#token-form")
    assert Membership.objects.get(user__username="carol", team__slug="carol-lab").role == Membership.Role.OWNER

    # A token, shown once; only its hash is stored.
    page.fill("#token-form input[name=name]", "laptop")
    page.select_option("#token-form select[name=scope]", ApiToken.Scope.SUBMIT)
    page.click("#token-form button[type=submit]")
    token = page.locator("#new-token").inner_text().strip()
    screenshot(page, "team-with-new-token")
    assert ApiToken.objects.filter(key_hash=ApiToken.hash_key(token), team__slug="carol-lab").exists()
    page.reload()
    assert page.locator("#new-token").count() == 0 and token not in page.content()
    assert "laptop" in page.locator("#token-table").inner_text()

    # An earlier algorithm, sent through the API with that token.
    earlier_id = api_submit(live_server.url, token, phase=PHASE, algorithm="fragile", tar=tars["fragile"])

    # The baseline from the browser: the size limit and quota show before the upload starts.
    page.add_init_script(STATUS_LOG)
    page.click("#submit-link")
    page.wait_for_load_state()  # upload.js, at the end of the body, has run and listens to the phase choice
    page.select_option("#phase", PHASE)
    expect(page.locator("#remaining")).to_have_text(f"{phase.submissions_per_day - 1} of {phase.submissions_per_day}")
    screenshot(page, "submit")

    # The connection drops twice: once mid-upload (the page asks the server for its offset and goes on), then
    # for good (carol reloads the page and picks the file again; the upload resumes at the server's offset).
    puts: list[str] = []
    dropped = {"for_good": False, "count": 0}

    def drop(route):
        if route.request.method != "PUT":
            return route.continue_()
        puts.append(route.request.headers.get("content-range", ""))
        if len(puts) == 3 or (len(puts) >= 6 and not dropped["for_good"]):
            dropped["count"] += 1
            return route.abort("connectionreset")
        return route.continue_()

    page.route("**/api/v1/uploads/*/", drop)
    page.fill("#algorithm", "baseline")
    page.set_input_files("#tar", str(tars["baseline"]))
    page.click("#upload-button")
    wait_until(lambda: page.wait_for_timeout(100) or len(puts) >= 7, timeout_s=120, what="the upload to drop")
    assert puts[3] == puts[2], "the chunk that dropped is sent again from the same offset"
    assert any(text.startswith("Connection lost") for text in page.evaluate("window.statusLog"))
    screenshot(page, "submit-connection-lost")
    confirmed = Upload.objects.get(team__slug="carol-lab", algorithm="baseline").received_bytes
    assert confirmed == 4 * 8 * 1024 * 1024
    page.reload()  # the old page's script is gone with it; only then does the network come back
    dropped["for_good"] = True
    sent_before = len(puts)
    page.select_option("#phase", PHASE)
    page.fill("#algorithm", "baseline")
    page.set_input_files("#tar", str(tars["baseline"]))
    page.click("#upload-button")
    page.wait_for_function("document.getElementById('progress').value > 10")
    assert f"Resuming at {confirmed} bytes." in page.evaluate("window.statusLog")
    assert puts[sent_before].startswith(f"bytes {confirmed}-"), puts[sent_before:]
    screenshot(page, "submit-uploading")

    # The live page: the stages move to Completed without a reload.
    page.wait_for_url("**/portal/submissions/*/", timeout=600_000)
    page.evaluate("window.notReloaded = true")
    submission = Submission.objects.get(team__slug="carol-lab", algorithm="baseline")
    assert Upload.objects.filter(team__slug="carol-lab").count() == 2  # one per image: the resume reused its upload
    assert submission.image.size_bytes == tars["baseline"].stat().st_size
    page.wait_for_selector("#stages tr[data-stage=upload] .badge.done")
    screenshot(page, "submission-live")
    page.wait_for_function("document.getElementById('state').textContent === 'Completed'", timeout=600_000)
    page.wait_for_selector("#result-organs")
    screenshot(page, "submission-completed")
    assert page.evaluate("window.notReloaded") is True
    statuses = page.locator("#stages .status").all_inner_texts()
    assert statuses == ["done"] * 6, statuses
    submission.refresh_from_db()
    assert submission.state == Submission.State.COMPLETED
    assert page.locator("#jobs tr.job").count() == submission.jobs.count()
    assert page.locator("#jobs tr.log details").count() == submission.jobs.count()  # the phase shares logs
    liver = [r.dsc for r in CaseResult.objects.filter(submission=submission, organ__name="liver") if r.dsc is not None]
    liver_row = page.locator("#result-organs tr", has_text="liver").inner_text()
    assert f"{100 * sum(liver) / len(liver):.1f}" in liver_row

    # The history of the phase, and the comparison with the earlier algorithm, paired by case.
    earlier = wait_final(earlier_id)
    assert earlier.state == Submission.State.COMPLETED, earlier.failure_reason
    page.click("text=← Carol Lab on")
    page.wait_for_selector("#history")
    screenshot(page, "history")
    page.click(f"#history a.compare[href*='/{earlier.pk}/compare/{submission.pk}/']")
    page.wait_for_selector("#compare-table")
    screenshot(page, "compare")
    expected = organ_differences(earlier, submission)
    assert expected["pancreas"] > 0  # the fragile algorithm never segments the pancreas
    for organ, mean in expected.items():
        row = page.locator("#compare-table tr", has=page.locator(f"td:text-is('{organ}')")).inner_text()
        assert f"{100 * mean:+.1f}" in row, (organ, mean, row)

    # On a phase where the team picks its public row, the latest stands until carol picks the earlier one.
    page.go_back()
    page.wait_for_selector(f"#history tr.picked[data-submission='{submission.pk}']")
    page.click(f"#history form.pick[data-submission='{earlier.pk}'] button")
    page.wait_for_selector(f"#history tr.picked[data-submission='{earlier.pk}']")
    screenshot(page, "history-picked")
    assert PublicPick.objects.get(team__slug="carol-lab", phase=phase).submission_id == earlier.pk
    assert page.locator("#history tr.picked").count() == 1

    # Signing out from the site's nav.
    page.click("header.top >> text=Sign out")
    page.wait_for_selector("header.top >> text=Sign in")
    # A forgotten password: the reset link arrives by email and sets a new one.
    page.click("header.top >> text=Sign in")
    page.click("text=Forgot your password?")
    page.fill("#id_email", "carol@example.org")
    page.click("#reset-form button[type=submit]")
    page.wait_for_selector("text=Check your email")
    link = re.search(r"http://\S+/portal/password-reset/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.fill("#id_new_password1", PASSWORD + " renewed")
    page.fill("#id_new_password2", PASSWORD + " renewed")
    screenshot(page, "password-reset")
    page.click("#reset-confirm-form button[type=submit]")
    page.click("#sign-in-again")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD + " renewed")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#my-teams")
    assert "Carol Lab" in page.locator("#my-teams").inner_text()

    # The only errors the browser saw are the connection resets the test made.
    assert page.errors == ["Failed to load resource: net::ERR_CONNECTION_RESET"] * dropped["count"], page.errors
