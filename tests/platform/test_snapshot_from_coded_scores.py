"""`snapshot_compute` builds the statistics from coded scores (binary COPY -> cubes, no long table); they are the
statistics of the long table the platform read before, float for float, on PostgreSQL and through the ORM."""

from __future__ import annotations

import pandas as pd
import pytest
from django.db import connection

from evaluator.stats.compute import compute_snapshot
from evaluator.stats.tables import score_cubes
from leaderboards import selectors, services
from leaderboards.models import LeaderboardSnapshot
from tests.conftest import unavailable
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db

N_BOOTSTRAP = 300


@pytest.fixture
def phase():
    if connection.vendor != "postgresql":
        unavailable("the COPY read is PostgreSQL's; set DATABASE_URL (make test does)")
    return scored_phase(cases_per_site=20, n_bootstrap=N_BOOTSTRAP)


def _long_table_statistics(phase) -> dict:
    """What `snapshot_compute` computed before: `compute_snapshot` of the COPY's long table."""
    benchmark = phase.benchmark
    submissions = selectors.ranked_submissions(phase=phase)
    metadata = pd.DataFrame.from_records(
        [
            {"case": case_id, **{key: meta.get(key) for key in services.BREAKDOWN_FIELDS if key in meta}}
            for case_id, meta in phase.cases.values_list("case_id", "metadata")
        ]
    )
    return compute_snapshot(
        selectors.score_table_copy(submissions=submissions),
        site_is_ood=dict(benchmark.sites.values_list("code", "out_of_distribution")),
        case_metadata=metadata,
        organs=list(benchmark.organs.values_list("name", flat=True)),
        n_bootstrap=N_BOOTSTRAP,
        seed=benchmark.bootstrap_seed,
        ci_method=benchmark.ci_method,
        p_value_method=benchmark.p_value_method,
        rank_method=benchmark.rank_method,
    ).to_json()


def test_the_stored_statistics_are_those_of_the_long_table(phase) -> None:
    stored = LeaderboardSnapshot.objects.filter(phase=phase).latest("pk")
    expected = _long_table_statistics(phase)
    assert stored.statistics == expected
    assert set(stored.statistics["algorithms"]) == set(ALGORITHMS)
    # more than 50 paired cases: the significance maps took the vectorised normal approximation
    assert stored.statistics["n_cases"] == 60


def test_the_orm_read_codes_the_same_scores_as_the_copy(phase, monkeypatch) -> None:
    submissions = selectors.ranked_submissions(phase=phase)
    organs = list(phase.benchmark.organs.values_list("name", flat=True))
    copied = score_cubes(selectors.coded_scores(submissions=submissions), organs=organs)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # the demo's path: the ORM's rows, coded
    read = score_cubes(selectors.coded_scores(submissions=submissions), organs=organs)
    assert copied.keys() == read.keys() == {"dsc", "nsd"}
    for metric, cube in copied.items():
        assert (cube.cases, cube.algorithms, cube.organs) == (
            read[metric].cases,
            read[metric].algorithms,
            read[metric].organs,
        )
        assert (cube.sites == read[metric].sites).all()
        assert pd.DataFrame(cube.values.reshape(len(cube.algorithms), -1)).equals(
            pd.DataFrame(read[metric].values.reshape(len(cube.algorithms), -1))
        )
        assert (cube.has_row == read[metric].has_row).all()


def test_no_submissions_give_no_scores(phase) -> None:
    assert len(selectors.coded_scores(submissions=[])) == 0
    assert score_cubes(selectors.coded_scores(submissions=[])) == {}
