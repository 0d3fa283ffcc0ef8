"""DeepMind's `surface-distance` package, made callable under NumPy 2 and SciPy 1.17, as the reference.

Touchstone's surface metrics are *defined* by DeepMind's package (surfels and their areas); our faster
implementation in `evaluator.scoring.surface` / `evaluator.scoring.distances` is tested against it and the benchmark
times it. Version 0.1 on PyPI predates NumPy 2: `compute_surface_distances` writes `np.Inf` (for a mask
without surface) and `compute_robust_hausdorff` / `compute_dice_coefficient` write `np.Inf` / `np.NaN`,
aliases NumPy 2.0 removed, so those calls raise `AttributeError`; it also calls `ndimage.filters.correlate`
and `ndimage.morphology.distance_transform_edt`, namespaces SciPy deprecates (removal in SciPy 2.0).

Rather than patching the global `numpy` module for every library in the process (which would also hide
such aliases in our own code), `deepmind()` rebinds the names `np` and `ndimage` *inside*
`surface_distance.metrics` only, to thin proxies that add the two aliases and map the two namespaces to
their current homes. The package's arithmetic is untouched: the same functions run on the same arrays.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage


class _NumpyWithLegacyAliases(types.ModuleType):
    """`numpy`, plus the `Inf` and `NaN` aliases NumPy 2.0 removed."""

    Inf = np.inf
    NaN = np.nan

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


class _NdimageWithLegacyNamespaces(types.ModuleType):
    """`scipy.ndimage`, reachable also as `.filters` and `.morphology` without deprecation warnings."""

    filters = ndimage
    morphology = ndimage

    def __getattr__(self, name: str) -> Any:
        return getattr(ndimage, name)


@functools.cache
def deepmind() -> types.ModuleType:
    """Return `surface_distance.metrics`, with its NumPy 2 / SciPy incompatibilities shimmed.

    >>> sd = deepmind()
    >>> empty = np.zeros((2, 2, 2), bool)
    >>> float(sd.compute_dice_coefficient(empty, empty))  # np.NaN inside
    nan
    """
    import surface_distance.metrics as metrics

    metrics.np = _NumpyWithLegacyAliases("numpy")  # type: ignore[attr-defined]
    metrics.ndimage = _NdimageWithLegacyNamespaces("scipy.ndimage")  # type: ignore[attr-defined]
    return metrics


@dataclass(frozen=True)
class ReferenceScores:
    """DeepMind's numbers for one organ: DSC, NSD at a tolerance, HD95 and ASSD (mm)."""

    dsc: float
    nsd: float
    hd95_mm: float
    assd_mm: float


def deepmind_scores(
    reference: np.ndarray, prediction: np.ndarray, spacing_mm: tuple[float, float, float], tolerance_mm: float
) -> ReferenceScores:
    """Score one organ (two boolean masks) with DeepMind's package, exactly as a user of it would.

    ASSD is the surfel-area-weighted mean over *both* surfaces (Heimann et al. 2009), computed from
    the package's two directed averages: `(avg_gt * area_gt + avg_pred * area_pred) / (area_gt +
    area_pred)`, so it is `inf` when either mask is empty and NaN when both are.
    """
    sd = deepmind()
    surface = sd.compute_surface_distances(reference, prediction, spacing_mm)
    dsc = float(sd.compute_dice_coefficient(reference, prediction))
    with np.errstate(invalid="ignore", divide="ignore"):
        nsd = float(sd.compute_surface_dice_at_tolerance(surface, tolerance_mm))
        hd95 = float(sd.compute_robust_hausdorff(surface, 95))
        area_gt = float(np.sum(surface["surfel_areas_gt"]))
        area_pred = float(np.sum(surface["surfel_areas_pred"]))
        avg_gt, avg_pred = sd.compute_average_surface_distance(surface)
        if area_gt > 0 and area_pred > 0:
            assd = (float(avg_gt) * area_gt + float(avg_pred) * area_pred) / (area_gt + area_pred)
        elif area_gt > 0 or area_pred > 0:
            assd = float("inf")
        else:
            assd = float("nan")
    return ReferenceScores(dsc=dsc, nsd=nsd, hd95_mm=hd95, assd_mm=assd)
