"""A stored snapshot's statistics are parsed, and its figures built, once; a new snapshot gets its own."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from leaderboards import charts, selectors
from leaderboards.services import snapshot_compute
from tests.platform.scored_phase import scored_phase

pytestmark = pytest.mark.django_db


@pytest.fixture
def phase():
    cache.clear()
    return scored_phase(cases_per_site=4, n_bootstrap=100)


def test_statistics_are_parsed_once_per_stored_snapshot(phase) -> None:
    first = selectors.latest_snapshot(phase=phase)
    parsed = selectors.snapshot_statistics(first)
    again = selectors.latest_snapshot(phase=phase)  # another request: a fresh model instance
    assert again is not first and selectors.snapshot_statistics(again) is parsed
    assert parsed.to_json() == first.statistics
    newer = snapshot_compute(phase_id=phase.pk, n_bootstrap=100)
    assert selectors.snapshot_statistics(newer) is not parsed


def test_figures_are_built_once_per_snapshot_metric_and_organ(phase, monkeypatch) -> None:
    snapshot = selectors.latest_snapshot(phase=phase)
    statistics = selectors.snapshot_statistics(snapshot)
    calls = []
    build = charts.leaderboard_figures

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return build(*args, **kwargs)

    monkeypatch.setattr(charts, "leaderboard_figures", counting)
    figures = selectors.snapshot_figures(snapshot=snapshot, statistics=statistics, metric="dsc", organ="liver")
    assert figures and all("<div" in html for html in figures.values())
    assert selectors.snapshot_figures(snapshot=snapshot, statistics=statistics, metric="dsc", organ="liver") == figures
    assert len(calls) == 1
    selectors.snapshot_figures(snapshot=snapshot, statistics=statistics, metric="nsd", organ="liver")
    newer = snapshot_compute(phase_id=phase.pk, n_bootstrap=100)
    selectors.snapshot_figures(
        snapshot=newer, statistics=selectors.snapshot_statistics(newer), metric="dsc", organ="liver"
    )
    assert [call["metric"] for call in calls] == ["dsc", "nsd", "dsc"]
