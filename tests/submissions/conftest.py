"""Fixtures for the tests of a submission's stages."""

import pytest

from tests.factories import CaseFactory, PhaseFactory, SiteFactory


@pytest.fixture
def sharded_phase():
    """11 cases on sites a, b and c; a canary of 3 cases, then shards of 4; 2 submissions a day."""
    phase = PhaseFactory(canary_size=3, shard_size=4, submissions_per_day=2)
    sites = [SiteFactory(benchmark=phase.benchmark, code=code) for code in ("a", "b", "c")]
    cases = [CaseFactory(site=sites[i % 3], benchmark=phase.benchmark, case_id=f"c{i:02d}") for i in range(11)]
    phase.cases.set(cases)
    return phase
