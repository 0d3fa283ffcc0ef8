"""label_extents: every label's bounding box, identical to scipy's find_objects."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from evaluator.scoring.extents import label_extents
from tests.evaluator.strategies import label_maps


@settings(max_examples=150, deadline=None)
@given(volume=label_maps(max_side=10, max_label=5), max_label=st.integers(1, 6))
def test_extents_equal_find_objects(volume: np.ndarray, max_label: int) -> None:
    assert label_extents(volume, max_label) == tuple(ndimage.find_objects(volume, max_label))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.uint64])
def test_extents_of_every_integer_dtype_and_layout(dtype: type) -> None:
    rng = np.random.default_rng(3)
    volume = (rng.integers(-2, 5, (7, 9, 11)) * (rng.random((7, 9, 11)) < 0.2)).astype(dtype)
    expected = tuple(ndimage.find_objects(volume, 4))
    assert label_extents(volume, 4) == expected
    assert label_extents(np.asfortranarray(volume), 4) == expected
    assert label_extents(volume[:, ::-1][:, ::-1], 4) == expected  # neither C nor F contiguous view


def test_extents_ignore_negative_and_larger_labels() -> None:
    volume = np.zeros((4, 4, 4), np.int16)
    volume[0, 0, 0], volume[3, 3, 3], volume[1, 2, 3] = -1, 9, 2
    assert label_extents(volume, 3) == (None, (slice(1, 2), slice(2, 3), slice(3, 4)), None)


def test_extents_of_a_boolean_mask() -> None:
    mask = np.zeros((3, 4, 5), bool)
    mask[1:3, 0, 2:4] = True
    assert label_extents(mask, 1) == ((slice(1, 3), slice(0, 1), slice(2, 4)),)


def test_extents_of_an_empty_volume_and_of_no_labels() -> None:
    assert label_extents(np.zeros((3, 3, 3), np.uint8), 2) == (None, None)
    assert label_extents(np.ones((3, 3, 3), np.uint8), 0) == ()


def test_extents_refuse_non_3d_and_float_arrays() -> None:
    with pytest.raises(ValueError, match="3-D"):
        label_extents(np.zeros((3, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="integer"):
        label_extents(np.zeros((3, 3, 3), np.float32), 1)


@pytest.mark.parametrize("max_label", [9, 20, 40, 64, 70, 300])
def test_extents_for_many_labels(max_label: int) -> None:
    rng = np.random.default_rng(max_label)
    volume = (rng.integers(0, max_label + 2, (9, 8, 7)) * (rng.random((9, 8, 7)) < 0.5)).astype(np.uint16)
    assert label_extents(np.asfortranarray(volume), max_label) == tuple(
        ndimage.find_objects(volume, max_label)
    )
