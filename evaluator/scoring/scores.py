"""What scoring a case produces: per-organ scores, their status, and the NSD definitions."""

from __future__ import annotations

from dataclasses import dataclass

from evaluator.choices import LabelledEnum
from evaluator.scoring.refusals import RefusalCategory

__all__ = ["CaseScore", "NsdDefinition", "OrganScore", "OrganStatus"]


class OrganStatus(LabelledEnum):
    """How an organ of a case was scored."""

    SCORED = "scored", "Scored"
    MISSED = "missed", "Missed: in the reference, not in the prediction (worst score)"
    ABSENT = "absent", "Not in the reference (not evaluable)"
    REFUSED = "refused", "No valid prediction (worst score)"


class NsdDefinition(LabelledEnum):
    """Which surface the normalized surface Dice (NSD) is computed on; a benchmark setting.

    SURFEL (default, the reference): DeepMind's `surface-distance` definition. The surface is made of
    marching-cubes surface elements on the voxel corners, each weighted by its area in mm^2; NSD is the
    area of both surfaces within the tolerance of the other, over the total area.
    VOXEL: MONAI's `compute_surface_dice(use_subvoxels=False)` default, used for Touchstone's published
    NSD values. The surface is the set of border voxels (foreground voxels with a background
    6-neighbour), each counting 1, at voxel centres; NSD is the number of border voxels of both masks
    within the tolerance of the other's border voxels, over their total number (compared in float32, as
    MONAI does). It differs from SURFEL by up to ~0.2 on real organs; choose it only to compare with
    numbers computed that way. HD95 and ASSD always use surfels.
    """

    SURFEL = "surfel", "Surface elements with areas (DeepMind surface-distance)"
    VOXEL = "voxel", "Border voxels counted (MONAI default, as Touchstone published)"


@dataclass(frozen=True)
class OrganScore:
    """One organ of one case.

    `dsc`: Dice in [0, 1]. `nsd`: normalized surface Dice in [0, 1] at the organ's tolerance.
    `hd95_mm`: 95th-percentile Hausdorff distance in mm, [0, inf]. `assd_mm`: average symmetric surface
    distance in mm, [0, inf]. Volumes in mL (voxel count x voxel volume of the reference). NaN for the
    metrics of an ABSENT organ; worst values (0, 0, inf, inf) for MISSED and REFUSED organs.
    `predicted_volume_ml` is NaN when the prediction was refused.
    """

    label: int
    name: str
    status: OrganStatus
    dsc: float
    nsd: float
    hd95_mm: float
    assd_mm: float
    reference_volume_ml: float
    predicted_volume_ml: float


@dataclass(frozen=True)
class CaseScore:
    """All organs of one case, and why the prediction was refused (None and '' if it was not)."""

    organs: tuple[OrganScore, ...]
    refusal: RefusalCategory | None
    message: str
