"""Leaderboard snapshots: the benchmark's statistics settings reach the statistics and the ranking; a stored
snapshot loads as the typed `Snapshot`, or is recomputed when it was stored by another schema version."""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import User

from benchmarks.models import Benchmark
from evaluator.stats.snapshot import SCHEMA_VERSION, Snapshot, SnapshotSchemaError
from leaderboards.models import LeaderboardSnapshot
from leaderboards.selectors import latest_snapshot
from leaderboards.services import snapshot_compute, snapshot_current
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


def test_the_benchmarks_statistics_settings_are_used_and_recorded():
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    Benchmark.objects.filter(pk=phase.benchmark_id).update(
        ci_method="bca", p_value_method="normal", rank_method="rank_then_mean", bootstrap_seed=11
    )
    snapshot = snapshot_compute(phase_id=phase.pk, n_bootstrap=60)
    statistics = Snapshot.from_json(snapshot.statistics)
    parameters = statistics.parameters
    assert (parameters.ci_method, parameters.p_value_method, parameters.rank_method) == (
        "bca", "normal", "rank_then_mean"
    )
    assert (parameters.seed, parameters.n_bootstrap) == (11, 60)
    # Rows follow the statistics' ranking (here: mean per-case rank), ranks included.
    board = statistics.metrics["dsc"].leaderboard
    assert [row["name"] for row in snapshot.rows] == [entry.algorithm for entry in board]
    assert [row["rank"] for row in snapshot.rows] == [entry.rank for entry in board]
    assert board[0].rank_score >= 1.0  # a mean rank, not a DSC


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


def test_a_stored_snapshot_of_this_schema_loads_without_recomputing():
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    stored = latest_snapshot(phase=phase)
    stored.refresh_from_db()  # the JSON as PostgreSQL gives it back
    snapshot, statistics = snapshot_current(phase=phase)
    assert snapshot.pk == stored.pk and LeaderboardSnapshot.objects.filter(phase=phase).count() == 1
    assert statistics.to_json() == stored.statistics
    assert statistics.metrics["dsc"].leaderboard[0].algorithm == stored.rows[0]["name"]


@pytest.mark.parametrize(
    "old", [{"schema_version": 0}, {}, {"schema_version": SCHEMA_VERSION}], ids=["older", "no version", "malformed"]
)
def test_a_stored_snapshot_of_another_schema_is_recomputed_instead_of_failing(old, client):
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    Benchmark.objects.filter(pk=phase.benchmark_id).update(bootstrap_samples=50)  # as the stored one used
    current = latest_snapshot(phase=phase)
    data = {key: value for key, value in copy.deepcopy(current.statistics).items() if key != "schema_version"}
    data["metrics"]["dsc"]["leaderboard"][0]["headline"] = data["metrics"]["dsc"]["leaderboard"][0].pop("mean")
    stale = LeaderboardSnapshot.objects.create(
        phase=phase, submission_ids=current.submission_ids, rows=current.rows, statistics={**data, **old}
    )
    with pytest.raises(SnapshotSchemaError):
        Snapshot.from_json(stale.statistics)
    snapshot, statistics = snapshot_current(phase=phase)
    assert snapshot.pk not in (current.pk, stale.pk) and latest_snapshot(phase=phase).pk == snapshot.pk
    assert snapshot.statistics["schema_version"] == SCHEMA_VERSION
    assert statistics == Snapshot.from_json(current.statistics)  # same scores, same seed: the same statistics
    # The next reader finds the recomputed one; the pages never see the stale one.
    assert snapshot_current(phase=phase)[0].pk == snapshot.pk
    assert client.get(f"/phases/{phase.slug}/").status_code == 200
    assert LeaderboardSnapshot.objects.filter(phase=phase).count() == 3
