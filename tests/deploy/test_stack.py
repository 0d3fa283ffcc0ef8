"""The production stack end to end: built offline, up under compose, used through the proxy over TLS.

A team is created in the web container, a small synthetic benchmark in a worker container; the baseline
image goes in with the CLI on the host, over HTTPS with the test's CA bundle; the leaderboard must equal
`evaluator.score_files` on the collected outputs; a restart loses nothing; `down -v` leaves nothing.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import evaluator
from tests.deploy.stack import PROJECT, ROOT, Stack, run

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1500)]
PHASE = "deploy-synthetic-final"


@pytest.fixture(scope="module")
def stack():
    stack = Stack()
    started = time.monotonic()
    stack.build_images()
    try:
        stack.start()
        wait_healthy(stack, timeout_s=240)
    except BaseException:
        print(stack.diagnostics())
        stack.stop()
        raise
    stack.timings_s["ready"] = time.monotonic() - started
    yield stack
    stopped = time.monotonic()
    stack.stop()
    stack.timings_s["down"] = time.monotonic() - stopped
    stack.timings_s["total"] = time.monotonic() - started
    # Torn down means gone: no container (the stack's or a job's), volume, network, mount, loop device or folder.
    assert stack.leftovers() == []


@pytest.fixture(autouse=True)
def diagnostics_on_failure(request, stack):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.diagnostics())


def health(stack: Stack) -> requests.Response:
    return requests.get(f"{stack.url}/healthz", verify=stack.ca_bundle, timeout=10)


def wait_healthy(stack: Stack, *, timeout_s: float) -> dict:
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            response = health(stack)
            if response.status_code == 200:
                return response.json()
            last = f"{response.status_code} {response.text[:500]}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(2)
    raise AssertionError(f"/healthz not healthy within {timeout_s} s: {last}")


def cli(*args: str, home: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """The team CLI as a team runs it: its own HOME (config saved by `login`), no CA bundle in the environment."""
    env = {key: value for key, value in os.environ.items() if key not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TOUCHSTONE_SERVER", "TOUCHSTONE_TOKEN")}
    return subprocess.run([sys.executable, "-m", "touchstone_cli.main", *args], capture_output=True, text=True,
                          env={**env, "HOME": str(home), "TOUCHSTONE_CONFIG": str(home / "touchstone.json")},
                          timeout=timeout_s, cwd=ROOT)


def test_proxy_serves_tls_health_redirects_and_security_headers(stack):
    body = wait_healthy(stack, timeout_s=60)
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert all(body["checks"]["workers"]["per_queue"][queue] >= 1 for queue in ("inference", "scoring", "control"))
    assert "names" not in body["checks"]["workers"]  # worker host names only for staff
    redirect = requests.get(f"http://127.0.0.1:{stack.ports['http']}/phases/x/?a=1", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == f"https://127.0.0.1:{stack.ports['https']}/phases/x/?a=1"
    home = requests.get(stack.url + "/", verify=stack.ca_bundle, timeout=10)
    assert home.status_code == 200
    assert home.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert home.headers["X-Frame-Options"] == "DENY"
    assert home.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in home.headers or "nginx/" not in home.headers["Server"]  # no version disclosed
    static = requests.get(stack.url + "/static/admin/css/base.css", verify=stack.ca_bundle, timeout=10)
    assert static.status_code == 200 and "text/css" in static.headers["Content-Type"]
    with pytest.raises(requests.exceptions.SSLError):  # the certificate is the operator's, not a public CA's
        requests.get(stack.url + "/healthz", timeout=10)


def test_check_deploy_is_clean_with_the_compose_settings(stack):
    done = stack.compose("exec", "-T", "web", "python3", "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert "no issues" in done.stdout, done.stdout + done.stderr


def test_inference_worker_caps_output_for_containers_the_host_engine_runs(stack):
    """The capped /output path under compose: the worker (in its container) loop-mounts the job's ext4 image,
    the mount propagates to the host (DATA_ROOT is rshared), and the host's dockerd binds it into a runsc
    container, whose writes past the cap fail. Without propagation the flood would land, uncapped, in the
    folder under the mount and the run would finish "ok"."""
    image = f"{PROJECT}-probe/output-flood:latest"
    dockerfile = 'FROM touchstone/base:latest\nCMD ["sh", "-c", "head -c 16777216 /dev/zero > /output/flood.nii.gz"]\n'
    run(["docker", "build", "--force-rm", "-q", "-t", image, "-"], input=dockerfile)
    try:
        done = stack.compose("exec", "-T", "inference-worker", "python3", "-c", OUTPUT_CAP_PROBE.format(
            image=image, name=f"{PROJECT}-probe"), timeout_s=180)
    finally:
        run(["docker", "rmi", "-f", image], check=False)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["mounted"] and outcome["runtime"] == "runsc", outcome
    assert outcome["exit_reason"] == "output_too_large", outcome
    assert not outcome["mounted_after_cleanup"], outcome
    assert not any(PROJECT in line and "probe" in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


# Run in the inference worker's container with the platform's own sandbox runner (SandboxRunner, no Django).
OUTPUT_CAP_PROBE = """
import json, os, pathlib
from submissions.sandbox import SandboxLimits, SandboxRunner
job_dir = pathlib.Path(os.environ["DATA_ROOT"]) / "jobs" / "deploy-probe" / "attempt-1"
runner = SandboxRunner()
input_dir, output_dir = runner.prepare_inputs(job_dir, [], {{1: "liver"}}, output_max_bytes=4 * 2**20, output_max_files=10)
mounted = os.path.ismount(output_dir)
limits = SandboxLimits(time_limit_s=60, memory_mb=256, cpus=1, output_max_bytes=4 * 2**20, output_max_files=10,
                       runtime=os.environ.get("TOUCHSTONE_SANDBOX_RUNTIME", "runsc"))
try:
    result = runner.run(image_id="{image}", input_dir=input_dir, output_dir=output_dir, limits=limits, name="{name}")
finally:
    runner.cleanup(job_dir)
print(json.dumps({{"mounted": mounted, "runtime": limits.runtime, "exit_reason": str(result.exit_reason.value),
                  "exit_code": result.exit_code, "mounted_after_cleanup": os.path.ismount(output_dir)}}))
"""


def test_submission_through_the_proxy_scores_like_the_evaluator_and_survives_a_restart(stack, tmp_path):
    started = time.monotonic()
    token = stack.manage("create_team", "Deploy Lab", "--quiet").strip().splitlines()[-1]
    stack.manage("make_synthetic_benchmark", "--size", "test", "--cases-per-site", "1", "--slug", "deploy-synthetic",
                 "--phase", PHASE, "--shard-size", "2", "--canary-size", "1", "--memory-mb", "1024",
                 service="scoring-worker")

    # The operator's own certificate: without its CA the CLI refuses the server and says what to pass.
    refused = cli("--server", stack.url, "--token", token, "phases", home=tmp_path)
    assert refused.returncode != 0 and "--ca-bundle" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    logged_in = cli("login", "--server", stack.url, "--token", token, "--ca-bundle", str(stack.ca_bundle), home=tmp_path)
    assert logged_in.returncode == 0, logged_in.stdout + logged_in.stderr

    # The team's path: `submit` saves the local image and uploads it in chunks through nginx to gunicorn.
    submitted = cli("submit", "touchstone-algo/baseline:latest", "--phase", PHASE, "--algorithm", "baseline", "--wait",
                    "--poll-s", "2", home=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    stack.timings_s["submission"] = time.monotonic() - started

    board_file = tmp_path / "board.json"
    deadline = time.monotonic() + 180
    while True:
        shown = cli("leaderboard", PHASE, "--json", str(board_file), home=tmp_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        board = json.loads(board_file.read_text())
        if board.get("rows"):
            break
        assert time.monotonic() < deadline, f"no leaderboard row within 180 s: {board}"
        time.sleep(3)
    [row] = board["rows"]

    # The same numbers from the evaluator, on the host, straight from the files on DATA_ROOT.
    folder = stack.data_root / "benchmarks" / "deploy-synthetic"
    manifest = json.loads((folder / "manifest.json").read_text())
    organs = [evaluator.OrganSpec(label=int(label), name=name) for label, name in manifest["labels"].items()]
    collected = sorted(stack.data_root.glob("jobs/*/*/attempt-*/predictions/*.nii.gz"))
    predictions = {path.name.removesuffix(".nii.gz"): path for path in collected}
    assert len(predictions) == len(collected), f"a case collected twice: {collected}"
    cases = manifest["cases"]
    assert set(predictions) == {case["case_id"] for case in cases}
    scores: dict[str, dict[str, list[float]]] = {"dsc": {}, "nsd": {}}
    for case in cases:
        score = evaluator.score_files(folder / case["label"], predictions[case["case_id"]], organs)
        assert score.refusal is None
        for organ_score in score.organs:
            for metric in scores:
                value = getattr(organ_score, metric)
                if not math.isnan(value):
                    scores[metric].setdefault(organ_score.name, []).append(value)
    assert scores["dsc"], "no organ had a reference: the comparison would prove nothing"
    for metric, per_organ in scores.items():
        for name, values in per_organ.items():
            assert row[metric]["organs"][name]["mean"] == pytest.approx(np.mean(values), abs=1e-9), (metric, name)

    # A restart of the whole stack loses nothing: the same board, the same submission, healthy again.
    before = health(stack).json()
    restarted = time.monotonic()
    stack.compose("restart", "--timeout", "10")
    wait_healthy(stack, timeout_s=180)
    stack.timings_s["restart"] = time.monotonic() - restarted
    again = cli("leaderboard", PHASE, "--json", str(tmp_path / "again.json"), home=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["rows"] == board["rows"]
    status = cli("status", str(row["submission_id"]), "--json", home=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["state"] == "completed", status.stdout
    assert before["checks"]["workers"]["per_queue"] == health(stack).json()["checks"]["workers"]["per_queue"]
