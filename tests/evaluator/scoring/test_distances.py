"""Directed distances between surfaces: bit-identical to DeepMind's EDT-based distances, in its order."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import evaluator.scoring.distances as distances
from evaluator.scoring.distances import directed_profile, lattice_distance_mm
from evaluator.scoring.reference import deepmind
from evaluator.scoring.surface import surfels
from tests.evaluator.strategies import label_maps, predictions_of, spacings


@settings(max_examples=60, deadline=None)
@given(spacing=spacings, seed=st.integers(0, 2**32 - 1))
def test_lattice_distance_is_bit_identical_to_scipy_edt(
    spacing: tuple[float, float, float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    features = rng.random((9, 8, 7)) < 0.05
    features[4, 4, 3] = True
    edt, nearest = ndimage.distance_transform_edt(~features, sampling=spacing, return_indices=True)
    delta = (nearest - np.indices(features.shape)).reshape(3, -1)
    assert np.array_equal(lattice_distance_mm(delta, spacing), edt.ravel())


def _profiles(reference: np.ndarray, prediction: np.ndarray, spacing: tuple[float, float, float]):
    ours = (
        directed_profile(
            surfels(reference, (0, 0, 0), spacing), surfels(prediction, (0, 0, 0), spacing), spacing
        ),
        directed_profile(
            surfels(prediction, (0, 0, 0), spacing), surfels(reference, (0, 0, 0), spacing), spacing
        ),
    )
    theirs = deepmind().compute_surface_distances(reference, prediction, spacing)
    return ours, theirs


def _assert_same(ours, theirs) -> None:
    forward, backward = ours
    assert np.array_equal(forward.distances_mm, theirs["distances_gt_to_pred"])
    assert np.array_equal(forward.weights, theirs["surfel_areas_gt"])
    assert np.array_equal(backward.distances_mm, theirs["distances_pred_to_gt"])
    assert np.array_equal(backward.weights, theirs["surfel_areas_pred"])


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    reference = draw(label_maps(max_side=14, max_label=1))
    prediction = draw(predictions_of(reference, max_label=1))
    return reference.astype(bool), prediction.astype(bool)


@settings(max_examples=150, deadline=None)
@given(masks=mask_pairs(), spacing=spacings)
def test_profiles_are_deepmind_sorted_distances_and_areas(
    masks: tuple[np.ndarray, np.ndarray], spacing: tuple[float, float, float]
) -> None:
    reference, prediction = masks
    if not reference.any() or not prediction.any():
        return  # DeepMind's empty-mask conventions are tested in test_scoring
    _assert_same(*_profiles(reference, prediction, spacing))


@pytest.mark.parametrize("far_points_by", ["tree", "transform"])
@settings(max_examples=60, deadline=None)
@given(masks=mask_pairs(), spacing=spacings)
def test_far_points_are_exact_by_tree_and_by_distance_transform(
    far_points_by: str, masks: tuple[np.ndarray, np.ndarray], spacing: tuple[float, float, float]
) -> None:
    reference, prediction = masks
    if not reference.any() or not prediction.any():
        return
    weight = 0 if far_points_by == "tree" else 10**9
    with (
        mock.patch.object(distances, "_OFFSETS_TARGET", 7),
        mock.patch.object(distances, "_TREE_QUERY_PER_TRANSFORM_CELL", weight),
    ):
        distances._offset_table.cache_clear()
        try:
            _assert_same(*_profiles(reference, prediction, spacing))
        finally:
            distances._offset_table.cache_clear()


def test_far_away_blobs_are_resolved_exactly_by_the_tree() -> None:
    reference = np.zeros((60, 50, 40), bool)
    reference[10:30, 10:30, 5:20] = True
    prediction = np.roll(reference, 1, axis=0)
    prediction[55:58, 45:48, 35:38] = True  # a blob far beyond the offset table's radius
    prediction[1, 48, 2] = True
    spacing = (0.7, 0.9, 2.5)
    ours, theirs = _profiles(reference, prediction, spacing)
    assert ours[1].distances_mm.max() > 30
    _assert_same(ours, theirs)


def test_without_an_occupancy_grid_every_point_goes_to_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distances, "_MAX_GRID_CELLS", 0)
    rng = np.random.default_rng(5)
    reference = rng.random((12, 11, 10)) < 0.3
    prediction = rng.random((12, 11, 10)) < 0.2
    _assert_same(*_profiles(reference, prediction, (1.0, 1.0, 1.0)))


def test_distances_to_an_empty_surface_are_infinite_and_sorted_by_area() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1] = True
    spacing = (1.0, 2.0, 3.0)
    empty = surfels(np.zeros_like(mask), (0, 0, 0), spacing)
    profile = directed_profile(surfels(mask, (0, 0, 0), spacing), empty, spacing)
    assert np.all(np.isinf(profile.distances_mm))
    assert np.all(np.diff(profile.weights) >= 0)
    assert directed_profile(empty, surfels(mask, (0, 0, 0), spacing), spacing).distances_mm.size == 0


def test_the_tree_takes_the_smallest_of_targets_tied_in_exact_arithmetic_as_the_distance_transform_does() -> None:
    # At 0.501 mm, offsets (1, 2, 2) and (3, 0, 0) are 1.503 mm away in exact arithmetic, but their float
    # distances (other orders of the same squares) differ in the last bit; the tree may find either.
    spacing = (0.501, 0.501, 0.501)
    offsets = np.array([(1, 2, 2), (2, 2, 1), (2, 1, 2), (3, 0, 0), (0, 3, 0), (0, 0, 3)]).T
    assert len(set(lattice_distance_mm(offsets, spacing).tolist())) > 1
    source = np.array([[5], [5], [5]])
    features = np.zeros((12, 12, 12), bool)
    features[tuple(source + offsets)] = True
    expected = ndimage.distance_transform_edt(~features, sampling=spacing)[5, 5, 5]
    for order in range(offsets.shape[1]):
        targets = np.roll(source + offsets, order, axis=1)
        assert distances._nearest_by_tree(source, targets, spacing)[0] == expected
