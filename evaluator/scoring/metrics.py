"""Per-organ segmentation metrics: DSC, NSD, HD95 and ASSD, with DeepMind's formulas.

The surface metrics take the two directed profiles of `evaluator.scoring.distances` (reference -> prediction
and prediction -> reference) and evaluate exactly the expressions of DeepMind's `surface-distance`
(`compute_surface_dice_at_tolerance`, `compute_robust_hausdorff`, `compute_average_surface_distance`)
on arrays sorted the same way, so the results agree with the reference to the last bit in practice.
One pair of profiles serves NSD, HD95 and ASSD.

Edge cases (the convention of DeepMind's package; `evaluator.scoring.cases` decides which organs are scored):
an empty prediction against a non-empty reference gives NSD 0, HD95 inf and ASSD inf; two empty
surfaces give NaN.
"""

from __future__ import annotations

import numpy as np

from evaluator.scoring.distances import DirectedProfile


def dice(intersection_voxels: int, reference_voxels: int, predicted_voxels: int) -> float:
    """Soerensen-Dice coefficient `2 |R & P| / (|R| + |P|)` from voxel counts.

    Unitless, in [0, 1]; 1 is perfect overlap. Both masks empty: NaN (as DeepMind's
    `compute_dice_coefficient`). Either mask empty, the other not: 0.

    >>> dice(3, 4, 2), dice(0, 5, 0)
    (1.0, 0.0)
    >>> dice(0, 0, 0)
    nan
    """
    total = reference_voxels + predicted_voxels
    if total == 0:
        return float("nan")
    return float(2 * intersection_voxels / total)


def normalized_surface_dice(
    reference_to_prediction: DirectedProfile, prediction_to_reference: DirectedProfile, tolerance_mm: float
) -> float:
    """Normalized surface Dice (NSD, "surface Dice") at `tolerance_mm`.

    Definition (Nikolov et al. 2021; DeepMind's `compute_surface_dice_at_tolerance`): the weight of
    the reference surface lying within `tolerance_mm` of the predicted surface, plus the weight of the
    predicted surface lying within `tolerance_mm` of the reference surface, divided by the total weight
    of both surfaces; a point counts when its distance is <= the tolerance. Weights are surfel areas
    (mm^2) for DeepMind's definition, or 1 per border voxel for MONAI's. Unitless, in [0, 1].
    Empty prediction, non-empty reference: 0. Both surfaces empty: NaN.

    >>> from evaluator.scoring.distances import DirectedProfile as P
    >>> one_way = P(np.array([0.0, 1.0, 3.0]), np.array([1.0, 1.0, 2.0]))
    >>> normalized_surface_dice(one_way, one_way, tolerance_mm=1.0)
    0.5
    """
    return _surface_dice(reference_to_prediction, prediction_to_reference, tolerance_mm, np.float64)


def normalized_surface_dice_float32(
    reference_to_prediction: DirectedProfile, prediction_to_reference: DirectedProfile, tolerance_mm: float
) -> float:
    """NSD as MONAI compares it: distances and tolerance rounded to float32 before `<=`.

    MONAI's `compute_surface_dice` stores distances as float32 tensors and compares them with the
    threshold in float32; this matters only for a distance within float32 rounding of the tolerance.
    """
    return _surface_dice(reference_to_prediction, prediction_to_reference, tolerance_mm, np.float32)


def _surface_dice(
    forward: DirectedProfile, backward: DirectedProfile, tolerance_mm: float, precision: type[np.floating]
) -> float:
    total = np.sum(forward.weights) + np.sum(backward.weights)
    if total == 0:
        return float("nan")
    limit = precision(tolerance_mm)
    within_forward = np.sum(forward.weights[forward.distances_mm.astype(precision) <= limit])
    within_backward = np.sum(backward.weights[backward.distances_mm.astype(precision) <= limit])
    return float((within_forward + within_backward) / total)


def robust_hausdorff(
    reference_to_prediction: DirectedProfile, prediction_to_reference: DirectedProfile, percent: float = 95.0
) -> float:
    """Robust Hausdorff distance in mm: the larger of the two directed `percent`-th percentiles.

    Definition (DeepMind's `compute_robust_hausdorff`): in each direction, the distance of the first
    point (in ascending distance) at which the cumulative surface weight reaches `percent`% of the
    total; HD95 is `percent=95`, `percent=100` is the classic Hausdorff distance. Units mm, range
    [0, inf). Empty prediction and non-empty reference: inf (the reference's distances are all inf).
    Both empty: inf as well in DeepMind's package; `evaluator.scoring.cases` reports NaN for that case.

    >>> from evaluator.scoring.distances import DirectedProfile as P
    >>> near = P(np.array([0.0] * 19 + [5.0]), np.ones(20))
    >>> robust_hausdorff(near, near, 95.0), robust_hausdorff(near, near, 100.0)
    (0.0, 5.0)
    """
    return max(
        _directed_percentile(reference_to_prediction, percent),
        _directed_percentile(prediction_to_reference, percent),
    )


def _directed_percentile(profile: DirectedProfile, percent: float) -> float:
    count = profile.distances_mm.size
    if count == 0:
        return float("inf")
    cumulative = np.cumsum(profile.weights) / np.sum(profile.weights)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(profile.distances_mm[min(index, count - 1)])


def average_symmetric_surface_distance(
    reference_to_prediction: DirectedProfile, prediction_to_reference: DirectedProfile
) -> float:
    """Average symmetric surface distance (ASSD) in mm.

    Definition (Heimann et al. 2009, with DeepMind's surfel areas as weights): the weighted mean of
    the distances of *all* points of both surfaces to the other surface,
    `(sum_R d*a + sum_P d*a) / (sum_R a + sum_P a)`. In terms of DeepMind's
    `compute_average_surface_distance`, which returns the two directed means, it is their mean
    weighted by each surface's total area. Units mm, range [0, inf). Empty prediction, non-empty
    reference: inf. Both empty: NaN.

    >>> from evaluator.scoring.distances import DirectedProfile as P
    >>> average_symmetric_surface_distance(P(np.array([0.0, 2.0]), np.ones(2)), P(np.array([1.0]), np.array([2.0])))
    1.0
    """
    total = np.sum(reference_to_prediction.weights) + np.sum(prediction_to_reference.weights)
    if total == 0:
        return float("nan")
    weighted = np.sum(reference_to_prediction.distances_mm * reference_to_prediction.weights) + np.sum(
        prediction_to_reference.distances_mm * prediction_to_reference.weights
    )
    return float(weighted / total)
