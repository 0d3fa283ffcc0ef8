"""Every label's bounding box in one pass over a label map: `scipy.ndimage.find_objects`, only faster.

A CT label map is mostly background. `label_extents` first finds the lines along the array's
contiguous axis that hold any nonzero value (one fast, vectorised pass over the whole volume), and
then looks only at those lines. For 8- and 16-bit label maps with at most 64 labels (every Touchstone
label map), each voxel of those lines is turned into a one-bit-per-label mask and OR-reduced along
and across the lines, which gives every label's range on all three axes at once. Otherwise
`find_objects` runs on the gathered lines, ordered by the slowest and then by the middle axis. On a
512x512x300 abdominal label map this is about 5x faster than `find_objects` on the whole volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = tuple[slice, slice, slice]

_BLOCK_VOXELS = 1 << 20  # lines are processed in blocks of about this many voxels


def label_extents(volume: np.ndarray, max_label: int) -> tuple[Box | None, ...]:
    """Bounding box of each label 1..`max_label` of a 3-D integer label map, as `find_objects` gives it.

    Returns a tuple whose item `label - 1` is a tuple of three slices (start inclusive, stop
    exclusive, step None) enclosing every voxel equal to `label`, or None if that label does not
    occur. Values <= 0 and values > `max_label` are ignored. Works for any memory layout; C- and
    Fortran-ordered arrays are read without copying.

    >>> v = np.zeros((4, 5, 6), np.uint8); v[1:3, 2, 0] = 2; v[3, 4, 5] = 2
    >>> label_extents(v, 3)
    (None, (slice(1, 4, None), slice(2, 5, None), slice(0, 6, None)), None)
    """
    if volume.ndim != 3:
        raise ValueError(f"label_extents needs a 3-D array, not {volume.ndim}-D")
    if volume.dtype.kind not in "iub":
        raise ValueError(f"label_extents needs an integer label map, not {volume.dtype}")
    if max_label < 1:
        return ()
    if volume.flags.f_contiguous:
        return _extents_fortran(volume, max_label)
    if not volume.flags.c_contiguous:
        volume = np.ascontiguousarray(volume)
    # The transpose of a C-ordered array is Fortran-ordered, with the axes reversed.
    extents = _extents_fortran(volume.T, max_label)
    return tuple(None if box is None else (box[2], box[1], box[0]) for box in extents)


def _extents_fortran(volume: np.ndarray, max_label: int) -> tuple[Box | None, ...]:
    """`label_extents` for a Fortran-ordered array (axis 0 contiguous)."""
    length, rows, slabs = volume.shape
    if volume.dtype == bool:
        volume = volume.view(np.uint8)
    lines = volume.reshape(length, rows * slabs, order="F")  # column j is line (j % rows, j // rows)
    active = np.flatnonzero(lines.any(axis=0))  # ordered by slab (axis 2), then row (axis 1)
    if active.size == 0:
        return (None,) * max_label
    if volume.dtype.itemsize <= 2 and max_label <= 64:
        return _extents_by_bitmask(lines, active, rows, max_label)
    return _extents_by_find_objects(lines, active, rows, max_label)


def _extents_by_bitmask(
    lines: np.ndarray, active: np.ndarray, rows: int, max_label: int
) -> tuple[Box | None, ...]:
    """Extents from one bit per label, OR-reduced along each active line and across them."""
    bit_type = np.uint16 if max_label <= 16 else np.uint32 if max_label <= 32 else np.uint64
    unsigned = lines.view(np.uint8 if lines.dtype.itemsize == 1 else np.uint16)
    lookup = np.zeros(1 << (8 * lines.dtype.itemsize), bit_type)
    for label in range(1, min(max_label, int(np.iinfo(lines.dtype).max)) + 1):
        lookup[label] = bit_type(1) << bit_type(label - 1)
    # Labels present in each active line, and at each position along the lines.
    line_bits: np.ndarray = np.empty(active.size, bit_type)
    position_bits: np.ndarray = np.zeros(lines.shape[0], bit_type)
    step = max(1, _BLOCK_VOXELS // lines.shape[0])
    for start in range(0, active.size, step):
        bits = lookup[unsigned[:, active[start : start + step]]]
        np.bitwise_or.reduce(bits, axis=0, out=line_bits[start : start + step])
        position_bits |= np.bitwise_or.reduce(bits, axis=1)
    line_rows, line_slabs = active % rows, active // rows
    result: list[Box | None] = []
    for label in range(1, max_label + 1):
        bit = bit_type(1) << bit_type(label - 1)
        holding = np.flatnonzero(line_bits & bit)
        if holding.size == 0:
            result.append(None)
            continue
        positions = np.flatnonzero(position_bits & bit)
        holding_rows = line_rows[holding]
        result.append(
            (
                slice(int(positions[0]), int(positions[-1]) + 1),
                slice(int(holding_rows.min()), int(holding_rows.max()) + 1),
                slice(int(line_slabs[holding[0]]), int(line_slabs[holding[-1]]) + 1),
            )
        )
    return tuple(result)


def _extents_by_find_objects(
    lines: np.ndarray, active: np.ndarray, rows: int, max_label: int
) -> tuple[Box | None, ...]:
    """Extents from `find_objects` on the active lines, ordered by slab and then by row."""
    rows_of, slabs_of = active % rows, active // rows
    by_row = np.lexsort((slabs_of, rows_of))
    slab_boxes = ndimage.find_objects(np.ascontiguousarray(lines[:, active].T), max_label)
    row_boxes = ndimage.find_objects(np.ascontiguousarray(lines[:, active[by_row]].T), max_label)
    rows_sorted = rows_of[by_row]
    result: list[Box | None] = []
    for slab_box, row_box in zip(slab_boxes, row_boxes, strict=True):
        if slab_box is None or row_box is None:
            result.append(None)
            continue
        result.append(
            (
                slice(slab_box[1].start, slab_box[1].stop),
                slice(int(rows_sorted[row_box[0].start]), int(rows_sorted[row_box[0].stop - 1]) + 1),
                slice(int(slabs_of[slab_box[0].start]), int(slabs_of[slab_box[0].stop - 1]) + 1),
            )
        )
    return tuple(result)
