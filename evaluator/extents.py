"""Every label's bounding box in one pass over a label map: `scipy.ndimage.find_objects`, only faster.

A CT label map is mostly background. `label_extents` first finds the lines along the array's
contiguous axis that hold any label (one fast, vectorised pass over the whole volume), gathers only
those lines, and runs `find_objects` on the gathered lines twice (lines ordered by the slowest axis,
then by the middle axis), which gives every label's exact range on all three axes. On a 512x512x300
abdominal label map that reads ~15% of the voxels twice instead of all voxels once through
`find_objects`' per-voxel iterator, about 2x faster; with labels everywhere it costs at most twice
`find_objects`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = tuple[slice, slice, slice]


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
        lines_first = volume  # axis 0 is contiguous
        axes = (0, 1, 2)
    else:
        if not volume.flags.c_contiguous:
            volume = np.ascontiguousarray(volume)
        lines_first = volume.T  # a Fortran-ordered view whose axis 0 is the original axis 2
        axes = (2, 1, 0)
    extents = _extents_fortran(lines_first, max_label)
    if axes == (0, 1, 2):
        return extents
    return tuple(None if box is None else (box[2], box[1], box[0]) for box in extents)


def _extents_fortran(volume: np.ndarray, max_label: int) -> tuple[Box | None, ...]:
    """`label_extents` for a Fortran-ordered array (axis 0 contiguous)."""
    length, rows, slabs = volume.shape
    if volume.dtype == bool:
        volume = volume.view(np.uint8)
    lines = volume.reshape(length, rows * slabs, order="F")  # column j is line (j % rows, j // rows)
    active = lines.any(axis=0)
    by_slab = np.flatnonzero(active)  # ordered by slab (axis 2), then row (axis 1)
    if by_slab.size == 0:
        return (None,) * max_label
    rows_of, slabs_of = by_slab % rows, by_slab // rows
    by_row_order = np.lexsort((slabs_of, rows_of))
    slab_boxes = ndimage.find_objects(np.ascontiguousarray(lines[:, by_slab].T), max_label)
    row_boxes = ndimage.find_objects(np.ascontiguousarray(lines[:, by_slab[by_row_order]].T), max_label)
    rows_sorted = rows_of[by_row_order]
    result: list[Box | None] = []
    for slab_box, row_box in zip(slab_boxes, row_boxes, strict=True):
        if slab_box is None or row_box is None:
            result.append(None)
            continue
        first, last = slab_box[0].start, slab_box[0].stop - 1
        row_first, row_last = row_box[0].start, row_box[0].stop - 1
        result.append(
            (
                slice(slab_box[1].start, slab_box[1].stop),
                slice(int(rows_sorted[row_first]), int(rows_sorted[row_last]) + 1),
                slice(int(slabs_of[first]), int(slabs_of[last]) + 1),
            )
        )
    return tuple(result)
