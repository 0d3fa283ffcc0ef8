"""Surfaces of a binary mask as points on the voxel lattice: DeepMind's surfels, or MONAI's border voxels.

Two definitions of "the surface" are used by the metrics (see `evaluator.scoring.NsdDefinition`):

* **Surfels** (DeepMind `surface-distance`, the reference): the surface lives on the voxel *corners*.
  Every corner has a 2x2x2 neighbourhood of voxels, encoded as an 8-bit *neighbour code*
  (`neighbour_codes`); a corner whose neighbourhood is neither all background (code 0) nor all
  foreground (code 255) carries surface elements, whose area in mm^2 is looked up per code
  (`surfel_area_table`, DeepMind's marching-cubes normals scaled by the voxel spacing). Corner `c` on
  an axis sits between voxels `c - 1` and `c`, so a mask of `n` voxels has corners `0..n`.
* **Border voxels** (MONAI's `use_subvoxels=False`, the definition of Touchstone's published NSD): the
  foreground voxels with at least one background 6-neighbour (`mask XOR erosion(mask)`), each counted
  once, located at the voxel centre.

Both are returned as a `Surface`: integer lattice coordinates in the *volume's* frame plus a per-point
weight (surfel area, or 1 per border voxel), so distances between two surfaces never depend on how
either was cropped. Outside the volume is background: a mask touching the volume border has surface
there. Masks are processed only inside the boxes that hold them (`tight_boxes`), so a prediction with
a few stray voxels far from the organ costs a few small boxes, not one box spanning the volume.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from surface_distance import lookup_tables

from evaluator.scoring.extents import Box

# Boxes smaller than this are never split further: splitting would cost more than it saves.
_MIN_SPLIT_VOXELS = 32_768
_MAX_BOXES = 64


@dataclass(frozen=True)
class Surface:
    """Points of one surface on the lattice, in the volume's frame, each with a weight given by its code.

    `points`: (3, n) int32 lattice coordinates, one row per axis (corner indices for surfels, voxel
    indices for border voxels). `codes`: (n,) uint8 neighbour codes for surfels (all zero for border voxels).
    `code_weights`: 256 float64 weights, one per code: the surfel area table in mm^2, or 1.0 for border
    voxels. An empty mask has n == 0.
    """

    points: np.ndarray
    codes: np.ndarray
    code_weights: np.ndarray

    @property
    def size(self) -> int:
        return int(self.points.shape[1])

    @property
    def weights(self) -> np.ndarray:
        """(n,) float64 weight of each point: its surfel area in mm^2, or 1.0 per border voxel."""
        return self.code_weights[self.codes]


_UNIT_WEIGHTS = np.ones(256, np.float64)
_UNIT_WEIGHTS.setflags(write=False)


@functools.lru_cache(maxsize=64)
def surfel_area_table(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Area in mm^2 of the surface elements of each of the 256 neighbour codes, for this spacing.

    DeepMind's own table (`surface_distance.lookup_tables`), computed by its own function so the
    areas are bit-identical to the reference. Codes 0 and 255 have area 0. Read-only array.

    >>> table = surfel_area_table((1.0, 1.0, 1.0))
    >>> round(float(table[1]), 6), float(table[0]), float(table[255])  # one corner of one voxel
    (0.216506, 0.0, 0.0)
    """
    table = np.asarray(lookup_tables.create_table_neighbour_code_to_surface_area(spacing_mm), np.float64)
    table.setflags(write=False)
    return table


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """The 8-bit neighbour code of every voxel corner of a 3-D boolean mask, outside counting as 0.

    Returns a uint8 array of shape `mask.shape + 1`; entry (i, j, k) is the corner shared by voxels
    (i-1..i, j-1..j, k-1..k), with DeepMind's bit order: voxel (i-1, j-1, k-1) is 128, (i-1, j-1, k) 64,
    (i-1, j, k-1) 32, (i-1, j, k) 16, (i, j-1, k-1) 8, (i, j-1, k) 4, (i, j, k-1) 2 and (i, j, k) 1 --
    the same codes as DeepMind's `correlate` with `ENCODE_NEIGHBOURHOOD_3D_KERNEL`, computed as three
    passes of shifts and ORs on uint8 instead of an 8-tap filter.

    >>> neighbour_codes(np.ones((1, 1, 1), bool)).ravel().tolist()
    [1, 2, 4, 8, 16, 32, 64, 128]
    """
    padded = np.zeros(tuple(n + 2 for n in mask.shape), np.uint8, order="F")
    padded[1:-1, 1:-1, 1:-1] = mask
    codes = padded[:, :, :-1] << 1
    codes |= padded[:, :, 1:]
    codes_2 = codes[:, :-1, :] << 2
    codes_2 |= codes[:, 1:, :]
    codes_3 = codes_2[:-1] << 4
    codes_3 |= codes_2[1:]
    return codes_3


def tight_boxes(mask: np.ndarray) -> list[Box]:
    """Boxes that together hold every True voxel of `mask`, splitting it along empty planes.

    Each box is tight (its faces touch True voxels) and any two boxes are separated by at least one
    all-False plane, so no voxel corner belongs to two boxes and every surface corner belongs to one.
    A box larger than 32k voxels is cut at every empty plane of the axis with the most empty
    planes, and the pieces are treated the same way, up to 64 boxes in all. An all-False mask gives [].

    >>> m = np.zeros((100, 30, 30), bool); m[0, 0, 0] = m[99, 29, 29] = True
    >>> sorted((b[0].start, b[1].start, b[2].start) for b in tight_boxes(m))
    [(0, 0, 0), (99, 29, 29)]
    >>> tight_boxes(m[:1])
    [(slice(0, 1, None), slice(0, 1, None), slice(0, 1, None))]
    """
    pending: list[Box] = [(slice(0, mask.shape[0]), slice(0, mask.shape[1]), slice(0, mask.shape[2]))]
    done: list[Box] = []
    while pending:
        box = pending.pop()
        sub = mask[box]
        plane = np.asarray(sub.any(axis=0))
        projections = [np.asarray(p) for p in (sub.any(axis=(1, 2)), plane.any(axis=1), plane.any(axis=0))]
        runs = [_true_runs(projection) for projection in projections]  # type: ignore[arg-type]
        if not runs[0]:
            continue
        tight = tuple(
            slice(box[axis].start + runs[axis][0][0], box[axis].start + runs[axis][-1][1])
            for axis in range(3)
        )
        lengths = [tight[axis].stop - tight[axis].start for axis in range(3)]
        empty_fraction = [
            1 - sum(stop - start for start, stop in runs[axis]) / lengths[axis] for axis in range(3)
        ]
        axis = int(np.argmax(empty_fraction))
        splittable = (
            empty_fraction[axis] > 0
            and lengths[0] * lengths[1] * lengths[2] > _MIN_SPLIT_VOXELS
            and len(done) + len(pending) + len(runs[axis]) <= _MAX_BOXES
        )
        if not splittable:
            done.append((tight[0], tight[1], tight[2]))
            continue
        for start, stop in runs[axis]:
            piece = list(tight)
            piece[axis] = slice(box[axis].start + start, box[axis].start + stop)
            pending.append((piece[0], piece[1], piece[2]))
    return done


def _true_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array."""
    steps = np.diff(np.concatenate(([0], flags.view(np.int8), [0])))
    return list(zip(np.flatnonzero(steps == 1).tolist(), np.flatnonzero(steps == -1).tolist(), strict=True))


def surfels(
    mask: np.ndarray, origin: tuple[int, int, int], spacing_mm: tuple[float, float, float]
) -> Surface:
    """DeepMind's surface elements of a boolean mask placed at `origin` (voxel index of `mask[0, 0, 0]`).

    Points are corner indices in the volume's frame (corner c between voxels c-1 and c); codes are the
    neighbour codes; weights are the surfel areas in mm^2. Empty mask: an empty `Surface`.
    """
    table = surfel_area_table(spacing_mm)
    points, codes = [], []
    for box in tight_boxes(mask):
        box_codes = neighbour_codes(mask[box])
        # (code + 1) >> 1 is zero exactly for codes 0 and 255; transposing makes the scan C-ordered.
        on_surface = box_codes + np.uint8(1)
        on_surface >>= 1
        flat = _flatnonzero_fortran(on_surface)
        points.append(_to_volume_frame(_unravel_fortran(flat, on_surface.shape), origin, box))
        codes.append(box_codes.ravel(order="F")[flat])
    return _surface(points, codes, table)


def border_voxels(mask: np.ndarray, origin: tuple[int, int, int]) -> Surface:
    """MONAI's border voxels of a boolean mask: foreground voxels with a background 6-neighbour.

    Equals `mask ^ scipy.ndimage.binary_erosion(mask)` (6-connectivity, outside is background), as
    MONAI's `get_mask_edges` computes it for `compute_surface_dice(use_subvoxels=False)`. Points are
    voxel indices in the volume's frame; every weight is 1.0.
    """
    points, codes = [], []
    for box in tight_boxes(mask):
        padded = np.zeros(tuple(n + 2 for n in mask[box].shape), bool, order="F")
        padded[1:-1, 1:-1, 1:-1] = mask[box]
        core = padded[1:-1, 1:-1, 1:-1]
        interior = core & padded[:-2, 1:-1, 1:-1]
        interior &= padded[2:, 1:-1, 1:-1]
        interior &= padded[1:-1, :-2, 1:-1]
        interior &= padded[1:-1, 2:, 1:-1]
        interior &= padded[1:-1, 1:-1, :-2]
        interior &= padded[1:-1, 1:-1, 2:]
        border = core & ~interior
        flat = _flatnonzero_fortran(border)
        points.append(_to_volume_frame(_unravel_fortran(flat, border.shape), origin, box))
        codes.append(np.zeros(flat.size, np.uint8))
    return Surface(points=_concat_points(points), codes=_concat_codes(codes), code_weights=_UNIT_WEIGHTS)


def _flatnonzero_fortran(array: np.ndarray) -> np.ndarray:
    """Fortran-order flat indices of the nonzero entries of a Fortran-ordered 3-D array.

    Scans memory in order (`np.nonzero` of a Fortran array is about 2x slower).
    """
    return np.flatnonzero(array.T)  # the C-order scan of the transposed view


def _unravel_fortran(flat: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three indices of Fortran-order flat indices into an array of `shape`."""
    rest, first = np.divmod(flat, shape[0])
    third, second = np.divmod(rest, shape[1])
    return first, second, third


def _to_volume_frame(index: tuple[np.ndarray, ...], origin: tuple[int, int, int], box: Box) -> np.ndarray:
    """(3, n) int32 volume coordinates of indices `index` into box `box` of a mask placed at `origin`.

    Works for voxel indices and for corner indices alike: corner p of a box lies between the box's
    voxels p-1 and p, which is corner (box start + p) of the crop and (origin + box start + p) of the
    volume.
    """
    points = np.empty((3, index[0].size), np.int32)
    for axis in range(3):
        np.add(index[axis], origin[axis] + box[axis].start, out=points[axis], casting="unsafe")
    return points


def _surface(points: list[np.ndarray], codes: list[np.ndarray], table: np.ndarray) -> Surface:
    return Surface(points=_concat_points(points), codes=_concat_codes(codes), code_weights=table)


def _concat_points(points: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(points, axis=1) if points else np.empty((3, 0), np.int32)


def _concat_codes(codes: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(codes) if codes else np.empty(0, np.uint8)
