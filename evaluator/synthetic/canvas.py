"""Drawing primitives for evaluator.synthetic.benchmark: an axis-aligned voxel canvas in patient millimetres and shapes
(warped ellipsoids, tubes along polylines) painted onto it in HU, labels and tissue classes.

Shapes are evaluated on their bounding box only, so a 512×512×300 canvas needs memory for itself and little more.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

AIR_HU = -1000.0


class Tissue(enum.IntEnum):
    """What fills a canvas voxel, so later strokes can be confined (organs stay inside the abdomen)."""

    AIR = 0
    SUBCUTANEOUS_FAT = 1
    ABDOMINAL_WALL = 2
    LUNG = 3
    CAVITY = 4  # intra-abdominal fat
    BOWEL = 5
    MUSCLE = 6  # psoas, paraspinal
    ORGAN = 7
    BONE = 8


SOFT_INTERIOR = (Tissue.CAVITY, Tissue.LUNG, Tissue.BOWEL, Tissue.ORGAN)  # where organs may grow
RETROPERITONEAL = (*SOFT_INTERIOR, Tissue.MUSCLE)  # kidneys and great vessels may also push into muscle

HuField = float | Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""A stroke's HU: a constant, or f(q, X, Y, Z) with q the normalised depth (0 centre, 1 surface)."""


@dataclass
class Canvas:
    """HU, labels and tissue on an axis-aligned grid given by ascending patient coordinates (mm)."""

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray
    image: np.ndarray  # float32 HU
    labels: np.ndarray  # uint8
    tissue: np.ndarray  # uint8 Tissue
    chunk: int  # slices per chunk for whole-volume passes

    @classmethod
    def empty(cls, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, chunk: int) -> Canvas:
        shape = (len(xs), len(ys), len(zs))
        return cls(
            xs.astype(np.float32),
            ys.astype(np.float32),
            zs.astype(np.float32),
            np.full(shape, AIR_HU, dtype=np.float32),
            np.zeros(shape, dtype=np.uint8),
            np.zeros(shape, dtype=np.uint8),
            chunk,
        )

    def box(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in [low, high] (mm), or None if there are none."""
        slices = []
        for coords, lo, hi in zip((self.xs, self.ys, self.zs), low, high, strict=True):
            start, stop = np.searchsorted(coords, lo, "left"), np.searchsorted(coords, hi, "right")
            if start >= stop:
                return None
            slices.append(slice(int(start), int(stop)))
        return slices[0], slices[1], slices[2]


@dataclass(frozen=True)
class Ellipsoid:
    """Rotated ellipsoid whose radius is modulated by a few smooth sinusoidal bumps (shape warps)."""

    center: np.ndarray  # (3,) mm
    radii: np.ndarray  # (3,) mm along the local axes
    rotation: np.ndarray  # (3, 3); column a is local axis a in patient coordinates
    warps: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # rows: amplitude, fx, fy, fz, phase

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * self.radii[None, :]) ** 2).sum(axis=1))
        half = half * (1.0 + np.abs(self.warps[:, 0]).sum())
        return self.center - half, self.center + half

    def depth(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        d = (
            (xs - self.center[0]).astype(np.float32)[:, None, None],
            (ys - self.center[1]).astype(np.float32)[None, :, None],
            (zs - self.center[2]).astype(np.float32)[None, None, :],
        )
        local = [
            sum(np.float32(self.rotation[i, axis] / self.radii[axis]) * d[i] for i in range(3))
            for axis in range(3)
        ]
        q = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
        if len(self.warps):
            scale = np.ones_like(q)
            for amplitude, fx, fy, fz, phase in self.warps:
                scale += np.float32(amplitude) * np.sin(
                    np.float32(fx) * local[0]
                    + np.float32(fy) * local[1]
                    + np.float32(fz) * local[2]
                    + np.float32(phase)
                )
            q /= scale
        return q


@dataclass(frozen=True)
class Tube:
    """Union of cone capsules along a polyline; radii vary linearly between points. ``squash`` narrows the
    cross-section along x and y (a flattened vein)."""

    points: np.ndarray  # (n, 3) mm
    radii: np.ndarray  # (n,) mm
    squash: tuple[float, float] = (1.0, 1.0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = float(self.radii.max())
        return self.points.min(axis=0) - reach, self.points.max(axis=0) + reach

    def depth(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        q = np.full((len(xs), len(ys), len(zs)), np.inf, dtype=np.float32)
        for start, stop, r_start, r_stop in zip(
            self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:], strict=True
        ):
            reach = max(r_start, r_stop)
            low, high = np.minimum(start, stop) - reach, np.maximum(start, stop) + reach
            ix = slice(np.searchsorted(xs, low[0]), np.searchsorted(xs, high[0], "right"))
            iy = slice(np.searchsorted(ys, low[1]), np.searchsorted(ys, high[1], "right"))
            iz = slice(np.searchsorted(zs, low[2]), np.searchsorted(zs, high[2], "right"))
            if ix.start >= ix.stop or iy.start >= iy.stop or iz.start >= iz.stop:
                continue
            d = (
                (xs[ix] - start[0]).astype(np.float32)[:, None, None],
                (ys[iy] - start[1]).astype(np.float32)[None, :, None],
                (zs[iz] - start[2]).astype(np.float32)[None, None, :],
            )
            axis = (stop - start).astype(np.float32)
            t = (d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) / np.float32(axis @ axis)
            np.clip(t, 0.0, 1.0, out=t)
            px = (d[0] - t * axis[0]) / np.float32(self.squash[0])
            py = (d[1] - t * axis[1]) / np.float32(self.squash[1])
            pz = d[2] - t * axis[2]
            radius = np.float32(r_start) + t * np.float32(r_stop - r_start)
            np.minimum(q[ix, iy, iz], np.sqrt(px * px + py * py + pz * pz) / radius, out=q[ix, iy, iz])
        return q


Shape = Ellipsoid | Tube


@dataclass(frozen=True)
class Stroke:
    """Paint ``shape`` with ``hu`` (and ``label`` when given) where the canvas allows it."""

    shape: Shape
    hu: HuField
    label: int | None = None
    tissue: Tissue = Tissue.ORGAN
    within_tissue: tuple[Tissue, ...] | None = SOFT_INTERIOR
    within_label: int | None = None
    clip: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None


def paint(canvas: Canvas, stroke: Stroke) -> None:
    low, high = stroke.shape.bounds()
    box = canvas.box(low, high)
    if box is None:
        return
    xs, ys, zs = canvas.xs[box[0]], canvas.ys[box[1]], canvas.zs[box[2]]
    q = stroke.shape.depth(xs, ys, zs)
    mask = q < 1.0
    if stroke.within_tissue is not None:
        allowed = np.zeros(256, dtype=bool)
        allowed[list(stroke.within_tissue)] = True
        mask &= allowed[canvas.tissue[box]]
    if stroke.within_label is not None:
        mask &= canvas.labels[box] == stroke.within_label
    X, Y, Z = xs[:, None, None], ys[None, :, None], zs[None, None, :]
    if stroke.clip is not None:
        mask &= stroke.clip(X, Y, Z)
    if not mask.any():
        return
    image = canvas.image[box]
    if callable(stroke.hu):
        image[mask] = np.broadcast_to(stroke.hu(q, X, Y, Z), q.shape)[mask]
    else:
        image[mask] = stroke.hu
    canvas.tissue[box][mask] = stroke.tissue
    if stroke.label is not None:
        canvas.labels[box][mask] = stroke.label


def texture_field(
    rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, amplitude_hu: float
) -> Callable[[slice], np.ndarray]:
    """Smooth tissue heterogeneity (standard deviation about ``amplitude_hu``, correlation ~12 mm), returned
    as a function of a range of slices so the full volume never exists at once."""
    step_mm = 12.0
    coarse_shape = [int(np.ceil((c[-1] - c[0]) / step_mm)) + 2 for c in (xs, ys, zs)]
    coarse = rng.standard_normal(coarse_shape).astype(np.float32) * np.float32(amplitude_hu)
    positions = [(c - c[0]) / step_mm for c in (xs, ys, zs)]
    plane = _interpolate_axis(_interpolate_axis(coarse, 0, positions[0]), 1, positions[1])

    def slab(render: slice) -> np.ndarray:
        return _interpolate_axis(plane, 2, positions[2][render])

    return slab


def _interpolate_axis(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at fractional index ``positions``."""
    low = np.clip(np.floor(positions).astype(np.intp), 0, array.shape[axis] - 2)
    weight = (positions - low).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    return np.take(array, low, axis=axis) * (1 - weight) + np.take(array, low + 1, axis=axis) * weight
