from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.stats.bootstrap import StratifiedBootstrap, bootstrap_means, reference_bootstrap_means
from evaluator.stats.ranking import (
    RankMethod,
    case_ranks,
    kendall_tau_b,
    organ_rank_stability,
    rank_algorithms,
    rank_descending,
    rank_stability,
)
from evaluator.stats.tables import score_cube
from tests.evaluator.conftest import long_table

NAN = float("nan")


def test_ranks_share_the_lowest_rank_on_ties_and_put_nan_last() -> None:
    assert rank_descending(np.array([0.8, 0.9, 0.8, NAN, 0.1])).tolist() == [2, 1, 2, 5, 4]
    assert rank_descending(np.array([[1.0, 2.0], [2.0, 1.0]])).tolist() == [[2, 1], [1, 2]]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 4), min_size=6, max_size=6), min_size=1, max_size=5),
    st.lists(st.integers(1, 5), min_size=6, max_size=6),
)
def test_kendall_tau_b_matches_scipy(rows: list[list[int]], reference: list[int]) -> None:
    ours = kendall_tau_b(np.array(rows), np.array(reference))
    for value, row in zip(ours, rows, strict=True):
        expected = stats.kendalltau(row, reference).statistic
        assert (np.isnan(value) and np.isnan(expected)) or value == pytest.approx(expected, abs=1e-12)


def _three_way_table():
    # alice wins liver by a mile but loses spleen narrowly on every case; bob is steady
    return long_table(
        {
            "alice": {"liver": [0.95, 0.96, 0.94, 0.95], "spleen": [0.70, 0.71, 0.69, 0.70]},
            "bob": {"liver": [0.80, 0.81, 0.79, 0.80], "spleen": [0.72, 0.73, 0.71, 0.72]},
            "carol": {"liver": [0.60, 0.61, 0.59, 0.60], "spleen": [0.74, 0.75, 0.73, 0.74]},
        },
        cases=["c1", "c2", "c3", "c4"],
    )


def test_mean_then_rank_ranks_by_the_headline() -> None:
    ranking = rank_algorithms(score_cube(_three_way_table(), "dsc"), RankMethod.MEAN_THEN_RANK)
    assert ranking.ordered() == ("alice", "bob", "carol")
    assert ranking.score[0] == pytest.approx((0.95 + 0.70) / 2)


def test_rank_then_mean_averages_per_case_ranks_over_organs() -> None:
    cube = score_cube(_three_way_table(), "dsc")
    ranks = case_ranks(cube.values)
    assert ranks[:, 0, 0].tolist() == [1, 2, 3] and ranks[:, 0, 1].tolist() == [3, 2, 1]
    ranking = rank_algorithms(cube, RankMethod.RANK_THEN_MEAN)
    np.testing.assert_allclose(ranking.score, [2.0, 2.0, 2.0])
    assert ranking.rank.tolist() == [1, 1, 1]  # every one is first once and third once


def test_test_then_rank_counts_significant_wins() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 40)
    table = long_table(
        {
            "alice": {"liver": list(base + 0.1)},
            "bob": {"liver": list(base + rng.normal(0, 0.01, 40))},
            "carol": {"liver": list(base - 0.1)},
        },
        cases=[f"c{i}" for i in range(40)],
    )
    ranking = rank_algorithms(score_cube(table, "dsc"), RankMethod.TEST_THEN_RANK)
    assert ranking.score.tolist() == [2.0, 1.0, 0.0]
    assert ranking.rank.tolist() == [1, 2, 3]


def test_rank_distribution_over_bootstrap_matches_ranking_each_naive_resample(random_scores) -> None:
    cube = score_cube(random_scores(cases=50, algorithms=4, seed=11), "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=200, seed=1)
    stability = rank_stability(cube, plan, means=bootstrap_means(cube, plan))
    naive = reference_bootstrap_means(cube, plan)
    expected = np.array([rank_descending(np.nanmean(organ, axis=1)) for organ in naive])
    np.testing.assert_array_equal(stability.bootstrap_ranks, expected)
    assert (stability.rank_counts.sum(axis=1) == 200).all()
    assert (stability.rank_counts.sum(axis=0) == 200).all()  # no ties in continuous scores


def test_a_dominant_algorithm_is_first_in_every_resample_and_tau_is_one() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 0.8, 30)
    table = long_table(
        {f"alg{i}": {"liver": list(base - 0.1 * i)} for i in range(4)}, cases=[f"c{i}" for i in range(30)]
    )
    cube = score_cube(table, "dsc")
    stability = rank_stability(cube, StratifiedBootstrap.for_cube(cube, n_resamples=100))
    assert stability.rank_counts[0].tolist() == [100, 0, 0, 0]
    assert (stability.kendall_tau == 1.0).all()
    low, high = stability.rank_interval()
    assert low.tolist() == high.tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("method", [RankMethod.RANK_THEN_MEAN, RankMethod.TEST_THEN_RANK])
def test_other_rank_methods_have_a_bootstrap_distribution(random_scores, method: RankMethod) -> None:
    cube = score_cube(random_scores(cases=30, algorithms=3, seed=4), "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=40)
    stability = rank_stability(cube, plan, method=method, max_test_resamples=10)
    assert stability.n_resamples == (10 if method is RankMethod.TEST_THEN_RANK else 40)
    assert stability.full.method is method
    assert ((stability.bootstrap_ranks >= 1) & (stability.bootstrap_ranks <= 3)).all()


def test_per_organ_rank_stability(random_scores) -> None:
    cube = score_cube(random_scores(cases=40, algorithms=3), "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=50)
    per_organ = organ_rank_stability(bootstrap_means(cube, plan))
    assert set(per_organ) == set(cube.organs)
    assert (per_organ["liver"].rank_counts.sum(axis=1) == 50).all()
