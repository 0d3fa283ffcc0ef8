"""Leaderboard snapshots: the benchmark's statistics settings reach the statistics and the ranking."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from benchmarks.models import Benchmark
from leaderboards.models import LeaderboardSnapshot
from leaderboards.selectors import latest_snapshot
from leaderboards.services import snapshot_compute
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


def test_the_benchmarks_statistics_settings_are_used_and_recorded():
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    Benchmark.objects.filter(pk=phase.benchmark_id).update(
        ci_method="bca", p_value_method="normal", rank_method="rank_then_mean", bootstrap_seed=11
    )
    snapshot = snapshot_compute(phase_id=phase.pk, n_bootstrap=60)
    parameters = snapshot.statistics["parameters"]
    assert (parameters["ci_method"], parameters["p_value_method"], parameters["rank_method"]) == (
        "bca", "normal", "rank_then_mean"
    )
    assert (parameters["seed"], parameters["n_bootstrap"]) == (11, 60)
    # Rows follow the statistics' ranking (here: mean per-case rank), ranks included.
    board = snapshot.statistics["metrics"]["dsc"]["leaderboard"]
    assert [row["name"] for row in snapshot.rows] == [entry["algorithm"] for entry in board]
    assert [row["rank"] for row in snapshot.rows] == [entry["rank"] for entry in board]
    assert board[0]["rank_score"] >= 1.0  # a mean rank, not a DSC


def test_organizers_recompute_a_phase_snapshot_from_the_admin(client):
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    before = LeaderboardSnapshot.objects.filter(phase=phase).count()
    client.force_login(User.objects.create_superuser("organizer", "o@example.org", "x"))
    response = client.post(
        "/admin/benchmarks/phase/",
        {"action": "recompute_leaderboard", "_selected_action": [phase.pk]},
        follow=True,
    )
    assert "Queued a new leaderboard snapshot for 1 phase(s)." in response.content.decode()
    assert LeaderboardSnapshot.objects.filter(phase=phase).count() == before + 1
    assert {row["name"] for row in latest_snapshot(phase=phase).rows} == set(ALGORITHMS)
