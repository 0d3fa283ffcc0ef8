"""The metric formulas on hand-made distance profiles, and their edge cases."""

from __future__ import annotations

import math

import numpy as np

from evaluator.scoring.distances import DirectedProfile
from evaluator.scoring.metrics import (
    average_symmetric_surface_distance,
    dice,
    normalized_surface_dice,
    normalized_surface_dice_float32,
    robust_hausdorff,
)


def _profile(distances: list[float], weights: list[float]) -> DirectedProfile:
    return DirectedProfile(np.array(distances, float), np.array(weights, float))


EMPTY = _profile([], [])


def test_dice_from_voxel_counts() -> None:
    assert dice(3, 4, 2) == 1.0
    assert dice(1, 3, 1) == 0.5
    assert dice(0, 7, 0) == 0.0
    assert math.isnan(dice(0, 0, 0))


def test_nsd_weighs_surface_within_tolerance_by_area() -> None:
    forward = _profile([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])  # 3 of 6 mm^2 within 1 mm
    backward = _profile([0.5, 4.0], [2.0, 2.0])  # 2 of 4 mm^2
    assert normalized_surface_dice(forward, backward, 1.0) == (3.0 + 2.0) / 10.0
    assert normalized_surface_dice(forward, backward, 10.0) == 1.0
    assert normalized_surface_dice(forward, backward, 0.0) == 0.1


def test_nsd_counts_a_distance_equal_to_the_tolerance() -> None:
    exactly = _profile([1.5], [1.0])
    assert normalized_surface_dice(exactly, exactly, 1.5) == 1.0


def test_nsd_of_an_empty_prediction_is_zero_and_of_two_empty_surfaces_nan() -> None:
    missed = _profile([math.inf, math.inf], [1.0, 1.0])
    assert normalized_surface_dice(missed, EMPTY, 1.0) == 0.0
    assert math.isnan(normalized_surface_dice(EMPTY, EMPTY, 1.0))


def test_float32_nsd_compares_like_monai() -> None:
    # 1.60000001 mm rounds to 1.6 in float32 (MONAI counts it), not in float64.
    close = _profile([1.60000001], [1.0])
    assert normalized_surface_dice(close, close, 1.6) == 0.0
    assert normalized_surface_dice_float32(close, close, 1.6) == 1.0


def test_robust_hausdorff_takes_the_first_distance_reaching_the_percentile() -> None:
    forward = _profile([0.0] * 18 + [1.0, 9.0], [1.0] * 20)  # 95% of the area reached at index 18
    backward = _profile([0.0, 2.0], [1.0, 1.0])
    assert robust_hausdorff(forward, forward, 95.0) == 1.0
    assert robust_hausdorff(forward, forward, 100.0) == 9.0
    assert robust_hausdorff(forward, backward, 95.0) == 2.0
    assert robust_hausdorff(forward, backward, 50.0) == 0.0


def test_robust_hausdorff_weighs_by_area() -> None:
    heavy_far = _profile([0.0, 5.0], [1.0, 99.0])
    assert robust_hausdorff(heavy_far, heavy_far, 2.0) == 5.0
    assert robust_hausdorff(heavy_far, heavy_far, 1.0) == 0.0


def test_robust_hausdorff_of_an_empty_prediction_is_infinite() -> None:
    assert robust_hausdorff(_profile([math.inf], [1.0]), EMPTY) == math.inf


def test_assd_is_the_area_weighted_mean_over_both_surfaces() -> None:
    forward = _profile([0.0, 2.0], [1.0, 1.0])
    backward = _profile([3.0], [2.0])
    assert average_symmetric_surface_distance(forward, backward) == (0 + 2 + 6) / 4
    assert average_symmetric_surface_distance(_profile([math.inf], [1.0]), EMPTY) == math.inf
    assert math.isnan(average_symmetric_surface_distance(EMPTY, EMPTY))
