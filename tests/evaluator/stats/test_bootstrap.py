from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.stats.bootstrap import (
    RESAMPLES_PER_BLOCK,
    IntervalMethod,
    StratifiedBootstrap,
    bca_interval,
    bootstrap_means,
    jackknife_organ_means,
    mean_intervals,
    paired_difference,
    pairwise_headline_differences,
    percentile_interval,
    quantiles,
    reference_bootstrap_means,
)
from evaluator.stats.tables import score_cube


def _cube(random_scores, **kwargs):
    return score_cube(random_scores(**kwargs), "dsc")


def test_every_resample_keeps_the_number_of_cases_of_each_site() -> None:
    sites = np.array(["A"] * 5 + ["B"] * 3 + ["C"] * 12)
    plan = StratifiedBootstrap(sites, n_resamples=600, seed=4)
    for _, counts in plan.blocks():
        for site in "ABC":
            assert (counts[:, sites == site].sum(axis=1) == (sites == site).sum()).all()


def test_a_resample_draws_only_within_each_site() -> None:
    sites = np.array(["A", "B", "A", "B", "B"])
    indices = StratifiedBootstrap(sites, n_resamples=10, seed=1).case_indices(7)
    assert sorted(sites[indices].tolist()) == sorted(sites.tolist())


def test_resamples_are_seeded_and_do_not_depend_on_the_total_number() -> None:
    sites = np.array(["A"] * 30 + ["B"] * 20)
    small = StratifiedBootstrap(sites, n_resamples=300, seed=9)
    large = StratifiedBootstrap(sites, n_resamples=900, seed=9)
    other = StratifiedBootstrap(sites, n_resamples=300, seed=10)
    for r in (0, RESAMPLES_PER_BLOCK - 1, RESAMPLES_PER_BLOCK, 299):
        np.testing.assert_array_equal(small.case_indices(r), large.case_indices(r))
    assert not np.array_equal(small.case_indices(0), other.case_indices(0))


def test_number_of_resamples_is_bounded() -> None:
    with pytest.raises(ValueError, match="10000"):
        StratifiedBootstrap(np.array(["A"]), n_resamples=10_001)
    with pytest.raises(ValueError):
        StratifiedBootstrap(np.array(["A"]), n_resamples=0)


def test_matrix_bootstrap_equals_a_naive_loop_over_the_same_draws(random_scores) -> None:
    table = random_scores(cases=50, algorithms=3, sites=3, seed=2)
    # one algorithm misses a few cases altogether: its means use the cases it has
    table = table.drop(
        index=table.index[(table["algorithm"] == "alg2") & table["case"].isin(["case001", "case007"])]
    )
    cube = score_cube(table, "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=300, seed=5)
    fast = bootstrap_means(cube, plan)
    for r in (0, 123, 299):  # textbook definition, written out
        sample = cube.values[:, plan.case_indices(r), :]
        organ = np.array([[np.mean(col[~np.isnan(col)]) for col in alg.T] for alg in sample])
        np.testing.assert_allclose(fast.organ_replicates[r], organ, rtol=1e-12)
        np.testing.assert_allclose(fast.headline_replicates[r], organ.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(fast.organ_replicates, reference_bootstrap_means(cube, plan), rtol=1e-12)


def test_headline_replicate_skips_an_organ_absent_from_the_resample() -> None:
    from tests.evaluator.conftest import long_table

    nan = float("nan")
    table = long_table(
        {"alice": {"liver": [0.2, 0.4, 0.6], "spleen": [0.9, nan, nan]}}, cases=["c1", "c2", "c3"]
    )
    cube = score_cube(table, "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=200, seed=0)
    means = bootstrap_means(cube, plan)
    no_spleen = [r for r in range(200) if 0 not in plan.case_indices(r)]
    assert no_spleen, "some resample misses case c1"
    r = no_spleen[0]
    assert np.isnan(means.organ_replicates[r, 0, 1])
    assert means.headline_replicates[r, 0] == means.organ_replicates[r, 0, 0]


def test_resampling_is_paired_across_algorithms(random_scores) -> None:
    table = random_scores(cases=40, algorithms=2, seed=3)
    shifted = table.copy()
    shifted.loc[shifted["algorithm"] == "alg1", "value"] = (
        shifted.loc[shifted["algorithm"] == "alg0", "value"].to_numpy() - 0.05
    )
    cube = score_cube(shifted, "dsc")
    means = bootstrap_means(cube, StratifiedBootstrap.for_cube(cube, n_resamples=200))
    # a constant shift survives every resample exactly because both use the same cases
    np.testing.assert_allclose(
        means.headline_replicates[:, 0] - means.headline_replicates[:, 1], 0.05, atol=1e-12
    )


def test_percentile_interval_is_numpys_percentile() -> None:
    replicates = np.random.default_rng(0).normal(size=(2000, 3))
    low, high = percentile_interval(replicates, 0.95)
    np.testing.assert_array_equal(low, np.percentile(replicates, 2.5, axis=0))
    np.testing.assert_array_equal(high, np.percentile(replicates, 97.5, axis=0))


@pytest.mark.filterwarnings("ignore:All-NaN slice")
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.floats(0, 1), st.integers(0, 10**6))
def test_quantiles_match_nanpercentile(n: int, q: float, seed: int) -> None:
    values = np.random.default_rng(seed).normal(size=(n, 2))
    values[::3, 1] = np.nan
    expected = np.nanpercentile(values, 100 * q, axis=0)
    np.testing.assert_allclose(quantiles(values, q), expected, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_bca_interval_agrees_with_scipy_given_the_same_resamples() -> None:
    x = np.random.default_rng(3).gamma(2.0, size=80)
    result = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=3000, rng=np.random.default_rng(8))
    jackknife = jackknife_organ_means(x[None, :, None])[:, 0, 0]
    low, high = bca_interval(np.asarray(x.mean()), result.bootstrap_distribution, jackknife, 0.95)
    np.testing.assert_allclose(
        [low, high], [result.confidence_interval.low, result.confidence_interval.high], rtol=1e-9
    )


def test_bca_and_percentile_intervals_cover_the_estimate(random_scores) -> None:
    cube = _cube(random_scores, cases=80)
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=500, seed=1)
    means = bootstrap_means(cube, plan)
    for method in IntervalMethod:
        intervals = mean_intervals(means, cube, method=method)
        assert (intervals.organ_low <= means.organ_estimate).all()
        assert (means.organ_estimate <= intervals.organ_high).all()
        assert (intervals.headline_low < means.headline_estimate).all()
        assert (means.headline_estimate < intervals.headline_high).all()


def test_paired_difference_uses_only_cases_both_can_be_scored_on() -> None:
    from tests.evaluator.conftest import long_table

    nan = float("nan")
    table = long_table(
        {"alice": {"liver": [0.9, 0.8, 0.7, 0.6]}, "bob": {"liver": [0.5, 0.6, nan, 0.4]}},
        cases=["c1", "c2", "c3", "c4"],
    )
    cube = score_cube(table, "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=400, seed=2)
    result = paired_difference(cube, plan, "alice", "bob", organ="liver")
    assert result.n_cases == 3
    assert result.difference == pytest.approx(((0.9 - 0.5) + (0.8 - 0.6) + (0.6 - 0.4)) / 3)
    assert 0.2 - 1e-12 <= result.ci_low <= result.ci_high <= 0.4 + 1e-12
    assert result.fraction_positive == 1.0


def test_pairwise_differences_equal_paired_differences(random_scores) -> None:
    cube = _cube(random_scores, cases=60, algorithms=3)
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=300, seed=3)
    table = pairwise_headline_differences(cube, plan, bootstrap_means(cube, plan))
    single = paired_difference(cube, plan, "alg0", "alg2")
    assert table.difference[0, 2] == pytest.approx(single.difference, abs=1e-12)
    assert table.ci_low[0, 2] == pytest.approx(single.ci_low, abs=1e-12)
    assert table.ci_high[2, 0] == pytest.approx(-single.ci_low, abs=1e-12)


def test_pairwise_differences_with_a_missing_case_resample_the_shared_cases(random_scores) -> None:
    table = random_scores(cases=40, algorithms=3)
    table = table.drop(index=table.index[(table["algorithm"] == "alg1") & (table["case"] == "case003")])
    cube = score_cube(table, "dsc")
    plan = StratifiedBootstrap.for_cube(cube, n_resamples=200, seed=3)
    pairs = pairwise_headline_differences(cube, plan, bootstrap_means(cube, plan))
    single = paired_difference(cube, plan, "alg1", "alg2")
    assert pairs.difference[1, 2] == pytest.approx(single.difference, abs=1e-12)
    assert pairs.ci_high[1, 2] == pytest.approx(single.ci_high, abs=1e-12)


def test_intervals_of_constant_scores_collapse_to_the_value() -> None:
    from tests.evaluator.conftest import long_table

    table = long_table(
        {"alice": {"liver": [0.5] * 6}, "bob": {"liver": [0.7] * 6}}, cases=[f"c{i}" for i in range(6)]
    )
    cube = score_cube(table, "dsc")
    means = bootstrap_means(cube, StratifiedBootstrap.for_cube(cube, n_resamples=50))
    for method in IntervalMethod:
        intervals = mean_intervals(means, cube, method=method)
        np.testing.assert_allclose(intervals.headline_low, [0.5, 0.7])
        np.testing.assert_allclose(intervals.headline_high, [0.5, 0.7])
