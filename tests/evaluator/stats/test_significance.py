from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.stats.significance import (
    PValueMethod,
    benjamini_hochberg_adjust,
    bonferroni_adjust,
    holm_adjust,
    order_by_median,
    signed_rank_pvalues,
    significance_map,
)
from evaluator.stats.tables import score_cube
from tests.evaluator.conftest import long_table


def _holm_by_hand(p: list[float]) -> list[float]:
    """statsmodels' multipletests(method='holm'), spelled out."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_matches_the_step_down_rule_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04]
    # sorted: 0.005*6=0.03, 0.01*5=0.05, 0.03*4=0.12, 0.04*3=0.12, 0.04*2=0.08->0.12, 0.2*1=0.2
    expected = [0.05, 0.12, 0.12, 0.03, 0.2, 0.12]
    np.testing.assert_allclose(holm_adjust(np.array(p)), expected)
    np.testing.assert_allclose(holm_adjust(np.array(p)), _holm_by_hand(p))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_holm_matches_hand_rule_on_random_p_values(p: list[float]) -> None:
    np.testing.assert_allclose(holm_adjust(np.array(p)), _holm_by_hand(p), rtol=1e-12)


def test_bonferroni_and_benjamini_hochberg() -> None:
    p = np.array([0.01, 0.02, 0.5])
    np.testing.assert_allclose(bonferroni_adjust(p), [0.03, 0.06, 1.0])
    np.testing.assert_allclose(benjamini_hochberg_adjust(p), [0.03, 0.03, 0.5])


def test_normal_approximation_matches_the_formula_by_hand() -> None:
    # 30 differences: ties among |d| and two zeros (dropped), so n = 28
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(0.1, 0.3, 30), 1)
    d[:2] = 0.0
    nonzero = d[d != 0]
    n = nonzero.size
    ranks = stats.rankdata(np.abs(nonzero))
    r_plus = ranks[nonzero > 0].sum()
    _, ties = np.unique(ranks, return_counts=True)
    variance = (n * (n + 1) * (2 * n + 1) - 0.5 * np.sum(ties * (ties**2 - 1))) / 24
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(variance)
    greater, less = signed_rank_pvalues(d, PValueMethod.NORMAL)
    assert greater == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert less == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(51, 400), st.integers(0, 10**6))
def test_large_samples_agree_with_scipys_asymptotic_test(n: int, seed: int) -> None:
    d = np.round(np.random.default_rng(seed).normal(0.02, 0.1, n), 2)  # ties and zeros
    if not (d != 0).any():
        return
    expected = stats.wilcoxon(d, alternative="greater", method="asymptotic", correction=False).pvalue
    for method in PValueMethod:
        assert signed_rank_pvalues(d, method)[0] == pytest.approx(expected, rel=1e-9)


def test_small_samples_use_the_exact_distribution_as_scipy_1_8_did() -> None:
    d = np.random.default_rng(2).normal(0.3, 1, 20)  # n <= 25, no zeros, no ties
    exact = stats.wilcoxon(d, alternative="greater", method="exact").pvalue
    assert signed_rank_pvalues(d, PValueMethod.NORMAL)[0] == pytest.approx(exact, rel=1e-12)


def test_exact_method_is_scipys_default_up_to_50_differences() -> None:
    d = np.random.default_rng(3).normal(0.2, 1, 40)
    assert signed_rank_pvalues(d, PValueMethod.EXACT)[0] == stats.wilcoxon(d, alternative="greater").pvalue
    assert signed_rank_pvalues(d, PValueMethod.EXACT)[1] == stats.wilcoxon(-d, alternative="greater").pvalue
    # 26..50 differences: the published figure used the normal approximation here
    assert signed_rank_pvalues(d, PValueMethod.NORMAL)[0] != signed_rank_pvalues(d, PValueMethod.EXACT)[0]


def test_all_zero_differences_give_no_evidence() -> None:
    assert signed_rank_pvalues(np.zeros(30)) == (1.0, 1.0)
    assert signed_rank_pvalues(np.array([])) == (1.0, 1.0)


def _panel_table(shuffle: bool = False):
    rng = np.random.default_rng(7)
    cases = [f"c{i:02d}" for i in range(60)]
    base = rng.uniform(0.6, 0.9, 60)
    table = long_table(
        {
            "strong": {"liver": list(base + 0.08)},
            "middle": {"liver": list(base + rng.normal(0.0, 0.002, 60))},
            "twin": {"liver": list(base + rng.normal(0.0, 0.002, 60))},
            "weak": {"liver": list(base - 0.1)},
        },
        cases=cases,
    )
    return table.sample(frac=1.0, random_state=1) if shuffle else table


def test_significance_map_orders_by_median_and_finds_clear_winners() -> None:
    panel = significance_map(score_cube(_panel_table(), "dsc"), "liver")
    assert panel.order[0] == "strong" and panel.order[-1] == "weak"
    assert panel.is_better("strong", "weak") and panel.is_better("strong", "twin")
    assert not panel.is_better("middle", "twin") and not panel.is_better("twin", "middle")
    assert not (panel.better & panel.better.T).any()
    assert (panel.n_cases[~np.eye(4, dtype=bool)] == 60).all()


def test_holm_correction_runs_over_all_ordered_pairs_of_the_panel() -> None:
    panel = significance_map(score_cube(_panel_table(), "dsc"), "liver")
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(panel.p_adjusted[off], holm_adjust(panel.p_value[off]))
    assert off.sum() == 2 * math.comb(4, 2)


def test_significance_map_pairs_by_case_id_not_row_order() -> None:
    ordered = significance_map(score_cube(_panel_table(), "dsc"), "liver")
    shuffled = significance_map(score_cube(_panel_table(shuffle=True), "dsc"), "liver")
    np.testing.assert_array_equal(ordered.p_value, shuffled.p_value)


def test_pairs_use_only_cases_where_both_have_a_value() -> None:
    nan = float("nan")
    table = long_table(
        {"alice": {"liver": [0.9, 0.8, nan, 0.7]}, "bob": {"liver": [0.5, nan, 0.6, 0.4]}},
        cases=["c1", "c2", "c3", "c4"],
    )
    panel = significance_map(score_cube(table, "dsc"), "liver")
    assert panel.n_cases[0, 1] == 2
    expected = signed_rank_pvalues(np.array([0.9 - 0.5, 0.7 - 0.4]))
    assert (panel.p_value[0, 1], panel.p_value[1, 0]) == expected


def test_order_by_median_keeps_given_order_on_ties_and_puts_empty_last() -> None:
    values = np.array([[0.5, 0.7], [np.nan, np.nan], [0.6, 0.6], [0.9, 0.1]])
    assert order_by_median(values, ("a", "b", "c", "d")) == ("a", "c", "d", "b")
