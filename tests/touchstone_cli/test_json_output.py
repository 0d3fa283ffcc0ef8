"""Every command's `--json`: machine-readable output alone on stdout; `status --watch` follows a submission.

Persona: alice's team, with one submission on a phase that shares logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from submissions.models import Job, Submission
from teams import services as team_services
from tests.conftest import ROOT, wait_until
from tests.factories import JobFactory, PhaseFactory, SubmissionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice(live_server, tmp_path) -> dict:
    team = team_services.team_create(name="Alice Lab")
    phase = PhaseFactory(slug="final", show_logs=True)
    submission = SubmissionFactory(team=team, phase=phase, algorithm="unet", state=Submission.State.RUNNING)
    JobFactory(submission=submission, index=0, state=Job.State.SUCCEEDED, log_tail="case 1 done\n")
    JobFactory(submission=submission, index=1, state=Job.State.RUNNING)
    env = {**os.environ, "TOUCHSTONE_SERVER": live_server.url, "TOUCHSTONE_TOKEN": team_services.token_issue(team=team),
           "TOUCHSTONE_CONFIG": str(tmp_path / "config.json")}
    return {"env": env, "submission": submission, "phase": phase}


def command(alice: dict, *args: str) -> list[str]:
    return [sys.executable, "-m", "touchstone_cli.main", *args]


def run(alice: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(alice, *args), cwd=ROOT, env=alice["env"], capture_output=True, text=True,
                          timeout=60)


def test_every_read_command_prints_only_json_on_stdout(alice):
    submission_id = str(alice["submission"].pk)
    phases = run(alice, "phases", "--json")
    assert phases.returncode == 0, phases.stderr
    assert [phase["slug"] for phase in json.loads(phases.stdout)] == ["final"]
    status = run(alice, "status", submission_id, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["id"] == alice["submission"].pk and [job["state"] for job in shown["jobs"]] == ["succeeded", "running"]
    results = run(alice, "results", submission_id, "--json")
    assert results.returncode == 0 and json.loads(results.stdout)["id"] == alice["submission"].pk
    logs = run(alice, "logs", submission_id, "--json")
    assert logs.returncode == 0, logs.stderr
    assert json.loads(logs.stdout)["jobs"][0]["log_tail"] == "case 1 done\n"
    board = run(alice, "leaderboard", "final", "--json")
    assert board.returncode == 0, board.stderr
    assert json.loads(board.stdout)["rows"] == []
    # Without --json the same commands print tables for people.
    assert "Submission" in run(alice, "status", submission_id).stdout


def test_errors_under_json_are_json_on_stdout_and_words_on_stderr(alice):
    missing = run(alice, "status", "999999", "--json")
    assert missing.returncode == 2
    assert "error" in json.loads(missing.stdout) and "touchstone:" in missing.stderr


def test_status_watch_prints_a_json_line_per_change_until_the_submission_is_final(alice):
    submission = alice["submission"]
    watcher = subprocess.Popen(command(alice, "status", str(submission.pk), "--watch", "--json", "--poll-s", "0.2"),
                               cwd=ROOT, env=alice["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["state"] == "running"
        Job.objects.filter(submission=submission, index=1).update(state=Job.State.SUCCEEDED)
        second = json.loads(watcher.stdout.readline())
        assert [job["state"] for job in second["jobs"]] == ["succeeded", "succeeded"]
        Submission.objects.filter(pk=submission.pk).update(state=Submission.State.COMPLETED)
        wait_until(lambda: watcher.poll() is not None, timeout_s=30, what="the watch to end")
        rest = [json.loads(line) for line in watcher.stdout.read().splitlines()]
    finally:
        watcher.kill()
        watcher.wait()
    assert watcher.returncode == 0
    assert [update["state"] for update in rest] == ["completed"]


def test_login_saves_a_ca_bundle_and_refuses_a_missing_one(alice, tmp_path):
    bundle = Path(tmp_path / "ca.pem")
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")  # only its path matters over plain HTTP
    env = {key: value for key, value in alice["env"].items() if key not in ("TOUCHSTONE_SERVER", "TOUCHSTONE_TOKEN")}
    token, server = alice["env"]["TOUCHSTONE_TOKEN"], alice["env"]["TOUCHSTONE_SERVER"]
    login = subprocess.run(command(alice, "login", "--server", server, "--token", token, "--ca-bundle", str(bundle),
                                   "--json"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["ca_bundle"] == str(bundle)
    assert json.loads(Path(env["TOUCHSTONE_CONFIG"]).read_text())["ca_bundle"] == str(bundle)
    missing = subprocess.run(command(alice, "login", "--server", server, "--token", token, "--ca-bundle",
                                     str(tmp_path / "nope.pem")), cwd=ROOT, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.pem does not exist" in missing.stderr
