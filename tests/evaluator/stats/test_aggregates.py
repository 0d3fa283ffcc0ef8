from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evaluator.stats.aggregates import (
    box_statistics,
    case_scores,
    distance_means,
    distribution,
    group_means,
    nanmean_last_axis,
    summarize,
)
from evaluator.stats.tables import score_cube
from tests.evaluator.conftest import long_table

NAN = float("nan")


def _cube():
    table = long_table(
        {
            "alice": {"liver": [0.9, 0.7, 0.8, 0.6], "spleen": [0.2, NAN, NAN, NAN]},
            "bob": {"liver": [0.5, 0.5, 0.5, 0.5], "spleen": [0.6, NAN, NAN, NAN]},
        },
        cases=["c1", "c2", "c3", "c4"],
        sites=["A", "A", "B", "B"],
    )
    return score_cube(table, "dsc")


def test_organ_mean_skips_not_evaluable_cases_and_counts_n() -> None:
    summary = summarize(_cube())
    np.testing.assert_allclose(summary.mean, [[0.75, 0.2], [0.5, 0.6]])
    assert summary.n_cases.tolist() == [[4, 1], [4, 1]]


def test_headline_is_the_unweighted_mean_of_organ_means_not_of_all_values() -> None:
    summary = summarize(_cube())
    np.testing.assert_allclose(summary.headline, [(0.75 + 0.2) / 2, (0.5 + 0.6) / 2])
    # a case-weighted mean would give alice (0.9+0.7+0.8+0.6+0.2)/5 = 0.64 and rank her first
    assert summary.headline[1] > summary.headline[0]


def test_median_and_reference_range_match_numpy() -> None:
    summary = summarize(_cube())
    assert summary.median[0, 0] == np.median([0.9, 0.7, 0.8, 0.6])
    low, high = np.percentile([0.9, 0.7, 0.8, 0.6], [2.5, 97.5])
    assert (summary.low[0, 0], summary.high[0, 0]) == (low, high)


def test_case_scores_with_and_without_missing_organs() -> None:
    cube = _cube()
    np.testing.assert_allclose(case_scores(cube)[0], [0.55, 0.7, 0.8, 0.6])
    strict = case_scores(cube, skip_missing_organs=False)[0]
    assert strict[0] == (0.9 + 0.2) / 2 and np.isnan(strict[1:]).all()


def test_case_scores_sum_organs_in_order_like_a_pandas_row_mean() -> None:
    rng = np.random.default_rng(5)
    wide = pd.DataFrame(rng.random((200, 9)), columns=[f"o{i}" for i in range(9)])
    wide.iloc[::7, 3] = np.nan
    table = long_table(
        {"alice": {c: wide[c].tolist() for c in wide}}, cases=[f"c{i:03d}" for i in range(200)]
    )
    cube = score_cube(table, "dsc")
    np.testing.assert_array_equal(
        case_scores(cube, skip_missing_organs=False)[0], wide.mean(axis=1, skipna=False)
    )
    np.testing.assert_array_equal(case_scores(cube)[0], wide.mean(axis=1))


def test_group_means_per_site() -> None:
    grouped = group_means(_cube(), np.array(["A", "A", "B", "B"], dtype=object))
    assert grouped.groups == ("A", "B")
    np.testing.assert_allclose(grouped.mean[0, :, 0], [0.8, 0.7])
    assert np.isnan(grouped.mean[0, 1, 1]) and grouped.n_cases[0, 1, 1] == 0
    np.testing.assert_allclose(grouped.headline[0], [(0.8 + 0.2) / 2, 0.7])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 300), elements=st.one_of(st.floats(0, 1), st.just(np.nan))))
def test_organ_mean_is_pandas_mean_bit_for_bit(values: np.ndarray) -> None:
    expected = pd.Series(values).mean()
    ours = nanmean_last_axis(values)
    assert (np.isnan(expected) and np.isnan(ours)) or ours == expected


def test_distribution_of_an_all_nan_row_is_nan() -> None:
    spread = distribution(np.array([[NAN, NAN], [0.5, 0.7]]))
    assert np.isnan(spread.median[0]) and spread.median[1] == 0.6
    assert spread.n.tolist() == [0, 2]


def test_box_statistics_whiskers_stop_at_the_last_case_within_1_5_iqr() -> None:
    values = np.array([0.0, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90])
    boxes = box_statistics(values)
    q1, q3 = np.percentile(values, [25, 75])
    assert (boxes.q1, boxes.q3) == (q1, q3)
    assert boxes.whisker_low == 0.80 and boxes.whisker_high == 0.90


def test_distance_means_count_infinite_cases_beside_the_finite_mean() -> None:
    distances = np.array([[2.0, np.inf, NAN, 4.0], [NAN, NAN, NAN, NAN], [np.inf, np.inf, NAN, NAN]])
    means = distance_means(distances)
    np.testing.assert_array_equal(means.mean_mm, [3.0, NAN, NAN])
    np.testing.assert_array_equal(means.n_finite, [2, 0, 0])
    np.testing.assert_array_equal(means.n_infinite, [1, 0, 2])
