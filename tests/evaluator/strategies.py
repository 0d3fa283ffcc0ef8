"""Hypothesis strategies for small random label maps, predictions of them, and voxel spacings."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def label_maps(draw: st.DrawFn, *, max_side: int = 12, max_label: int = 3) -> np.ndarray:
    """A small 3-D label map of blobs, scattered voxels, one label everywhere, or nothing; C or F order."""
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["scattered", "blobs", "blobs", "full", "empty"]))
    volume = np.zeros(shape, np.uint8)
    if kind == "scattered":
        density = draw(st.floats(0.0, 1.0))
        volume = (rng.integers(1, max_label + 1, shape) * (rng.random(shape) < density)).astype(np.uint8)
    elif kind == "blobs":
        for _ in range(draw(st.integers(1, 4))):
            low = [int(rng.integers(0, n)) for n in shape]
            high = [int(rng.integers(start + 1, n + 1)) for start, n in zip(low, shape, strict=True)]
            volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = rng.integers(1, max_label + 1)
    elif kind == "full":
        volume[...] = rng.integers(1, max_label + 1)
    return np.asfortranarray(volume) if draw(st.booleans()) else volume


@st.composite
def predictions_of(draw: st.DrawFn, reference: np.ndarray, *, max_label: int = 3) -> np.ndarray:
    """A prediction of `reference`: shifted, partly relabelled, unrelated, identical or empty."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["shifted", "noisy", "noisy", "unrelated", "same", "empty"]))
    if kind == "shifted":
        return np.roll(reference, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    if kind == "noisy":
        flip = rng.random(reference.shape) < draw(st.floats(0.0, 0.5))
        noise = rng.integers(0, max_label + 1, reference.shape)
        return np.where(flip, noise, reference).astype(np.uint8)
    if kind == "unrelated":
        return (rng.integers(1, max_label + 1, reference.shape) * (rng.random(reference.shape) < 0.3)).astype(
            np.uint8
        )
    if kind == "same":
        return reference.copy()
    return np.zeros_like(reference)


spacings = st.one_of(
    st.tuples(*[st.floats(0.3, 3.0, allow_nan=False, allow_infinity=False)] * 3),
    st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0])] * 3),
)
