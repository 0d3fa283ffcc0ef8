"""The whole pipeline on real services: the CLI uploads an image to the live API, real Celery workers run it
in the sandbox on a real Docker engine, score it into PostgreSQL, and the leaderboard ranks it.

Personas: alice's team submits the baseline; bob's team submits an algorithm that crashes on one site.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

import evaluator
from benchmarks.models import Phase
from leaderboards.models import LeaderboardSnapshot
from submissions import inference, scoring
from submissions.models import CaseResult, ExitReason, Job, Submission
from teams import services as team_services
from tests.conftest import ROOT, SYNTHETIC_PHASE, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PHASE = SYNTHETIC_PHASE


@pytest.fixture
def phase(synthetic_phase) -> Phase:
    return synthetic_phase


def cli(live_server, token: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOUCHSTONE_SERVER": live_server.url, "TOUCHSTONE_TOKEN": token,
           "TOUCHSTONE_CONFIG": str(home / "config.json")}
    return subprocess.run(
        [sys.executable, "-m", "touchstone_cli.main", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )


def wait_final(submission_id: int, timeout_s: float = 420) -> Submission:
    def final():
        submission = Submission.objects.get(pk=submission_id)
        return submission if submission.state in Submission.FINAL_STATES else None

    return wait_until(final, timeout_s=timeout_s, what=f"submission {submission_id} to finish", interval_s=1)


def test_baseline_and_fragile_run_score_and_rank_end_to_end(phase, live_server, algorithm_images, tmp_path):
    alice = team_services.team_create(name="Alice Lab")
    bob = team_services.team_create(name="Bob Lab")
    alice_token, bob_token = team_services.token_issue(team=alice), team_services.token_issue(team=bob)

    submitted = cli(live_server, alice_token, "submit", algorithm_images["baseline"], "--phase", PHASE,
                    "--algorithm", "baseline", home=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert "Uploading" in submitted.stderr and "100.0%" in submitted.stderr
    baseline = Submission.objects.get(team=alice)
    fragile_run = cli(live_server, bob_token, "submit", algorithm_images["fragile"], "--phase", PHASE,
                      "--algorithm", "fragile", home=tmp_path)
    assert fragile_run.returncode == 0, fragile_run.stderr
    fragile = Submission.objects.get(team=bob)

    baseline = wait_final(baseline.pk)
    assert baseline.state == Submission.State.COMPLETED, baseline.failure_reason
    jobs = list(baseline.jobs.order_by("index"))
    assert jobs[0].is_canary and len(jobs) == math.ceil(phase.cases.count() / 2)
    assert all(job.state == Job.State.SUCCEEDED and job.attempt == 1 for job in jobs)
    assert all(job.worker for job in jobs)

    # Stored results equal scoring the collected predictions directly with the evaluator.
    organs = scoring.organ_specs(phase.benchmark)
    data_root = Path(settings.DATA_ROOT)
    n_organs = phase.benchmark.organs.count()
    assert CaseResult.objects.filter(submission=baseline).count() == phase.cases.count() * n_organs
    for job in jobs:
        for case in job.cases.all():
            prediction = inference.job_dir(job) / "predictions" / f"{case.case_id}.nii.gz"
            expected = evaluator.score_files(data_root / case.reference_path, prediction, organs)
            assert expected.refusal is None
            for organ_score in expected.organs:
                stored = CaseResult.objects.get(submission=baseline, case=case, organ__label=organ_score.label)
                assert stored.status == organ_score.status
                for field in ("dsc", "nsd"):
                    value = getattr(organ_score, field)
                    assert (getattr(stored, field) is None) if math.isnan(value) else getattr(stored, field) == pytest.approx(value, abs=1e-12)

    fragile = wait_final(fragile.pk)
    failed_jobs = list(fragile.jobs.filter(state=Job.State.FAILED))
    assert failed_jobs, f"expected a failed job, got {list(fragile.jobs.values('state', 'detail'))}"
    assert all(job.exit_reason == ExitReason.CRASHED and job.attempt == 1 for job in failed_jobs)
    assert any("orientation" in job.last_output_line.lower() for job in failed_jobs), [
        job.log_tail for job in failed_jobs
    ]
    assert not any("orientation" in job.detail.lower() for job in failed_jobs)  # output only where logs are shared
    refused = CaseResult.objects.filter(submission=fragile).exclude(refusal="")
    assert refused.exists()
    assert set(refused.values_list("dsc", flat=True)) <= {0.0, None}

    # The leaderboard snapshot ranks both with the means of the stored per-case scores.
    snapshot = wait_until(
        lambda: LeaderboardSnapshot.objects.filter(phase=phase, submission_ids__contains=[baseline.pk, fragile.pk]).first()
        if fragile.state == Submission.State.COMPLETED
        else LeaderboardSnapshot.objects.filter(phase=phase).first(),
        timeout_s=120, what="a leaderboard snapshot",
    )
    row = next(r for r in snapshot.rows if r["submission_id"] == baseline.pk)
    liver = [r.dsc for r in CaseResult.objects.filter(submission=baseline, organ__name="liver") if r.dsc is not None]
    assert row["dsc"]["organs"]["liver"]["mean"] == pytest.approx(np.mean(liver))
    assert row["dsc"]["organs"]["liver"]["n"] == len(liver)
    organ_means = [o["mean"] for o in row["dsc"]["organs"].values() if o["mean"] is not None]
    assert row["dsc"]["headline"] == pytest.approx(np.mean(organ_means))

    # The CLI shows the same numbers and the failure's cause.
    board = cli(live_server, alice_token, "leaderboard", PHASE, "--json", str(tmp_path / "board.json"), home=tmp_path)
    assert board.returncode == 0, board.stderr
    assert f"{100 * row['dsc']['headline']:.1f}" in board.stdout
    best = snapshot.statistics["metrics"]["dsc"]["leaderboard"][0]
    assert f"{100 * best['ci_low']:.1f}-{100 * best['ci_high']:.1f}" in board.stdout
    saved = json.loads((tmp_path / "board.json").read_text())
    assert saved["statistics"]["metrics"]["dsc"]["leaderboard"][0] == best
    status = cli(live_server, bob_token, "status", str(fragile.pk), home=tmp_path)
    assert "Crashed" in status.stdout and "orientation" in status.stdout.lower()

    # Teams cannot read each other's submissions.
    other = cli(live_server, bob_token, "status", str(baseline.pk), home=tmp_path)
    assert other.returncode == 2 and "404" in other.stderr
