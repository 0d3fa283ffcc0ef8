"""Surfaces on the lattice: the same surfels (corners, codes, areas) as DeepMind's, MONAI's border voxels."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from surface_distance import lookup_tables

from evaluator.scoring.reference import deepmind
from evaluator.scoring.surface import (
    Surface,
    border_voxels,
    neighbour_codes,
    surfel_area_table,
    surfels,
    tight_boxes,
)
from tests.evaluator.strategies import label_maps, spacings


def _deepmind_surfels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepMind's surface corners (volume frame, sorted) and their codes, via its own crop and kernel."""
    sd = deepmind()
    low, high = sd._compute_bounding_box(mask)
    if low is None:
        return np.empty((0, 3), np.int64), np.empty(0, np.int64)
    crop = sd._crop_to_bounding_box(mask, low, high)
    codes = ndimage.correlate(
        crop.astype(np.uint8), lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0
    )
    border = (codes != 0) & (codes != 255)
    points = np.argwhere(border) + low
    return points, codes[border]


def _sorted(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    points = surface.points.T.astype(np.int64)
    order = np.lexsort(points.T[::-1])
    return points[order], surface.codes[order].astype(np.int64)


@settings(max_examples=120, deadline=None)
@given(volume=label_maps(max_side=9, max_label=1))
def test_neighbour_codes_equal_deepmind_kernel(volume: np.ndarray) -> None:
    mask = volume.astype(bool)
    padded = np.pad(mask, ((1, 1), (1, 1), (1, 1))).astype(np.uint8)
    expected = ndimage.correlate(
        padded, lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0
    )[1:, 1:, 1:]
    assert np.array_equal(neighbour_codes(mask), expected)


@settings(max_examples=120, deadline=None)
@given(
    volume=label_maps(max_side=12, max_label=1), spacing=spacings, origin=st.tuples(*[st.integers(0, 50)] * 3)
)
def test_surfels_are_deepmind_corners_codes_and_areas(
    volume: np.ndarray, spacing: tuple[float, float, float], origin: tuple[int, int, int]
) -> None:
    mask = volume.astype(bool)
    surface = surfels(mask, origin, spacing)
    points, codes = _sorted(surface)
    expected_points, expected_codes = _deepmind_surfels(mask)
    assert np.array_equal(points, expected_points + np.array(origin))
    assert np.array_equal(codes, expected_codes)
    table = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    assert np.array_equal(surface.weights, table[surface.codes])


def test_surfels_of_a_large_sparse_mask_split_into_boxes_are_unchanged() -> None:
    mask = np.zeros((80, 70, 60), bool)
    mask[10:30, 5:25, 5:20] = True
    mask[70, 65, 55] = mask[2, 60, 50] = mask[75, 3, 1] = True
    assert len(tight_boxes(mask)) == 4
    points, codes = _sorted(surfels(mask, (0, 0, 0), (1.0, 1.0, 1.0)))
    expected_points, expected_codes = _deepmind_surfels(mask)
    assert np.array_equal(points, expected_points) and np.array_equal(codes, expected_codes)


def test_a_single_voxel_has_eight_corner_surfels() -> None:
    surface = surfels(np.ones((1, 1, 1), bool), (4, 5, 6), (1.0, 1.0, 1.0))
    assert surface.size == 8
    assert sorted(map(tuple, surface.points.T.tolist())) == [
        (i, j, k) for i in (4, 5) for j in (5, 6) for k in (6, 7)
    ]
    # Each corner carries one marching-cubes triangle of area sqrt(3)/8 at unit spacing.
    assert np.allclose(surface.weights, np.sqrt(3) / 8)


def test_surfel_area_table_is_deepmind_table_and_read_only() -> None:
    table = surfel_area_table((0.7, 1.1, 2.5))
    assert np.array_equal(table, lookup_tables.create_table_neighbour_code_to_surface_area((0.7, 1.1, 2.5)))
    assert not table.flags.writeable


@settings(max_examples=100, deadline=None)
@given(volume=label_maps(max_side=10, max_label=1), origin=st.tuples(*[st.integers(0, 20)] * 3))
def test_border_voxels_are_mask_xor_its_six_connected_erosion(
    volume: np.ndarray, origin: tuple[int, int, int]
) -> None:
    mask = volume.astype(bool)
    expected = np.argwhere(mask ^ ndimage.binary_erosion(mask)) + np.array(origin)
    surface = border_voxels(mask, origin)
    points = surface.points.T.astype(np.int64)
    assert np.array_equal(points[np.lexsort(points.T[::-1])], expected)
    assert np.all(surface.weights == 1.0)


@settings(max_examples=100, deadline=None)
@given(volume=label_maps(max_side=40, max_label=1))
def test_tight_boxes_cover_the_mask_and_are_separated(volume: np.ndarray) -> None:
    mask = volume.astype(bool)
    boxes = tight_boxes(mask)
    covered = np.zeros_like(mask)
    for box in boxes:
        sub = mask[box]
        assert (
            sub.any(axis=(1, 2))[[0, -1]].all()
            and sub.any(axis=(0, 2))[[0, -1]].all()
            and sub.any(axis=(0, 1))[[0, -1]].all()
        )
        covered[box] = True
    assert not (mask & ~covered).any()
    for index, first in enumerate(boxes):
        for second in boxes[index + 1 :]:
            # Separated by at least one empty plane on some axis: no shared voxel corner.
            assert any(a.stop < b.start or b.stop < a.start for a, b in zip(first, second, strict=True))


def test_an_empty_mask_has_no_surface() -> None:
    empty = np.zeros((3, 4, 5), bool)
    assert surfels(empty, (0, 0, 0), (1.0, 1.0, 1.0)).size == 0
    assert border_voxels(empty, (0, 0, 0)).size == 0
    assert tight_boxes(empty) == []
