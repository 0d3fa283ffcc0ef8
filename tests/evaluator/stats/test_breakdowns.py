from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from evaluator.stats.breakdowns import (
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    Correction,
    age_bands,
    breakdown,
    compare_groups,
    distribution_labels,
)
from evaluator.stats.tables import score_cube


def _groups(seed: int = 0, shift: float = 0.1):
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [rng.normal(0.8, 0.05, 30), rng.normal(0.8, 0.05, 25), rng.normal(0.8 - shift, 0.05, 20)]
    )
    labels = np.array(["siemens"] * 30 + ["ge"] * 25 + ["philips"] * 20, dtype=object)
    return values, labels


def test_kruskal_wallis_then_mann_whitney_with_bonferroni_as_scipy() -> None:
    values, labels = _groups()
    result = compare_groups(values, labels, factor="scanner")
    samples = {g: values[labels == g] for g in sorted(set(labels))}
    h, p = stats.kruskal(*samples.values())
    assert (result.kruskal_h, result.kruskal_p) == pytest.approx((h, p))
    assert result.significant
    for test, (a, b) in zip(result.pairwise, itertools.combinations(samples, 2), strict=True):
        u, p_raw = stats.mannwhitneyu(samples[a], samples[b], alternative="two-sided")
        assert (test.group_a, test.group_b) == (a, b)
        assert test.p_value == pytest.approx(p_raw)
        assert test.p_adjusted == pytest.approx(min(1.0, 3 * p_raw))
    significant = {(t.group_a, t.group_b) for t in result.pairwise if t.significant}
    assert significant == {("ge", "philips"), ("philips", "siemens")}


def test_pairwise_results_are_not_significant_without_a_significant_omnibus_test() -> None:
    values, labels = _groups(shift=0.0, seed=3)
    result = compare_groups(values, labels, factor="scanner")
    assert result.kruskal_p > 0.05 and not result.significant
    assert not any(t.significant for t in result.pairwise)


def test_small_groups_are_left_out_and_listed() -> None:
    values, labels = _groups()
    labels[:25] = "siemens"
    labels[25:30] = "toshiba"  # 5 cases
    result = compare_groups(values, labels, factor="scanner", min_cases_per_group=10)
    assert result.excluded_groups == ("toshiba",)
    assert [g.group for g in result.groups] == ["ge", "philips", "siemens"]


def test_holm_correction_is_available() -> None:
    values, labels = _groups()
    result = compare_groups(values, labels, factor="scanner", correction=Correction.HOLM)
    assert result.correction is Correction.HOLM


def test_breakdown_tests_each_algorithm_on_per_case_scores(random_scores) -> None:
    cube = score_cube(random_scores(cases=90, algorithms=2, sites=3), "dsc")
    results = breakdown(cube, cube.sites.astype(object), factor="site")
    assert [r.algorithm for r in results] == ["alg0", "alg1"]
    assert sum(g.n_cases for g in results[0].groups) == 90 - np.isnan(cube.values[0]).all(axis=1).sum()


def test_distribution_labels_and_age_bands() -> None:
    labels = distribution_labels(np.array(["A", "B", "C"]), {"A": False, "B": True})
    assert labels.tolist() == [IN_DISTRIBUTION, OUT_OF_DISTRIBUTION, None]
    assert age_bands([0, 19.9, 20, 79, 80, 95, np.nan, -1]).tolist() == [
        "0-19",
        "0-19",
        "20-39",
        "60-79",
        "80+",
        "80+",
        None,
        None,
    ]
