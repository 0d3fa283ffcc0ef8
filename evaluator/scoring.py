"""Scoring a case: every organ's DSC, NSD, HD95, ASSD and volumes, from arrays or from files.

`score_case` scores two label maps in memory. `score_files` scores a reference file and a team's
prediction file: the prediction is read and checked in a forked child with time and memory limits
while the reference is read, and the whole case runs in its own child, so a malformed or hostile
prediction can neither crash the caller nor be scored as something it is not (it is refused, and
scores worst). `score_many` scores many cases in parallel, one child per case, as many at a time as
there are cores.

Conventions (Touchstone's, see DESIGN.md): an organ absent from the reference is ABSENT, all its
metrics NaN (excluded from means), even if the prediction has it (its predicted volume is still
reported); an organ present in the reference but missing from the prediction is MISSED and scores
worst (DSC 0, NSD 0, HD95 and ASSD inf, as DeepMind's package gives for an empty prediction); a
refused or missing prediction is REFUSED for every organ present in the reference, with the same
worst values. Distances use the reference's voxel spacing.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from evaluator.distances import DirectedProfile, directed_profile
from evaluator.extents import Box, label_extents
from evaluator.isolation import ChildFailed, ChildProcess, Limits, Outcome, run_in_children, shared_array
from evaluator.loading import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    LabelMap,
    LoadError,
    RefusalCategory,
    compact_label_dtype,
    load_prediction,
    load_reference,
    read_geometry,
)
from evaluator.metrics import (
    average_symmetric_surface_distance,
    dice,
    normalized_surface_dice,
    normalized_surface_dice_float32,
    robust_hausdorff,
)
from evaluator.organs import OrganSpec
from evaluator.surface import Surface, border_voxels, surfels

__all__ = [
    "CaseScore",
    "NsdDefinition",
    "OrganScore",
    "OrganSpec",
    "OrganStatus",
    "score_case",
    "score_files",
    "score_many",
]

logger = logging.getLogger(__name__)

Spacing = tuple[float, float, float]

DEFAULT_READ_TIMEOUT_S = 120.0
DEFAULT_READ_MEMORY_BYTES = 6 * 1024**3
DEFAULT_CASE_TIMEOUT_S = 900.0
DEFAULT_CASE_MEMORY_BYTES = 12 * 1024**3


class OrganStatus(StrEnum):
    """How an organ of a case was scored."""

    SCORED = "scored"
    MISSED = "missed"
    ABSENT = "absent"
    REFUSED = "refused"

    @property
    def label(self) -> str:
        return {
            OrganStatus.SCORED: "Scored",
            OrganStatus.MISSED: "Missed (present in the reference, empty in the prediction): worst score",
            OrganStatus.ABSENT: "Absent from the reference: not evaluable",
            OrganStatus.REFUSED: "Prediction refused or missing: worst score",
        }[self]


class NsdDefinition(StrEnum):
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

    SURFEL = "surfel"
    VOXEL = "voxel"

    @property
    def label(self) -> str:
        return {
            NsdDefinition.SURFEL: "Surfels with areas (DeepMind surface-distance)",
            NsdDefinition.VOXEL: "Border voxels (MONAI default, as Touchstone published)",
        }[self]


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


def score_case(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Spacing,
    organs: Sequence[OrganSpec],
    nsd_definition: NsdDefinition = NsdDefinition.SURFEL,
) -> tuple[OrganScore, ...]:
    """Score every organ of a case from two 3-D integer label maps of the same shape.

    `spacing_mm`: the reference's voxel spacing per array axis, in mm. Returns one `OrganScore` per
    organ, in the order of `organs`. DSC, NSD (DeepMind's surfel definition unless `nsd_definition`
    is VOXEL), HD95 and ASSD agree with DeepMind's `surface-distance` on the same masks.

    >>> from evaluator.organs import OrganSpec
    >>> reference = np.zeros((3, 3, 3), np.uint8); reference[1, 1, 1] = 1
    >>> [liver] = score_case(reference, reference.copy(), (1.0, 1.0, 1.0), [OrganSpec(1, "liver")])
    >>> liver.status.value, liver.dsc, liver.nsd, liver.hd95_mm, liver.assd_mm
    ('scored', 1.0, 1.0, 0.0, 0.0)
    """
    spacing = _checked_spacing(spacing_mm)
    if reference.ndim != 3 or reference.shape != prediction.shape:
        raise ValueError(
            f"need two 3-D label maps of one shape, got {reference.shape} and {prediction.shape}"
        )
    for name, array in (("reference", reference), ("prediction", prediction)):
        if array.dtype.kind not in "iub":
            raise ValueError(f"the {name} must hold integer labels, not {array.dtype}")
    _check_organs(organs)
    max_label = max(organ.label for organ in organs)
    reference_extents = label_extents(reference, max_label)
    prediction_extents = label_extents(prediction, max_label)
    return tuple(
        _score_organ(
            reference, prediction, reference_extents, prediction_extents, spacing, organ, nsd_definition
        )
        for organ in organs
    )


def score_files(
    reference_path: Path,
    prediction_path: Path | None,
    organs: Sequence[OrganSpec],
    *,
    nsd_definition: NsdDefinition = NsdDefinition.SURFEL,
    allowed_labels: Collection[int] | None = None,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    read_memory_bytes: int = DEFAULT_READ_MEMORY_BYTES,
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S,
    case_memory_bytes: int = DEFAULT_CASE_MEMORY_BYTES,
) -> CaseScore:
    """Score a prediction file against a reference file, refusing (and scoring worst) a bad prediction.

    `prediction_path` None, or no such file: refusal MISSING_OUTPUT. `allowed_labels`: the benchmark's
    label set (default: the organs' labels); a prediction with other labels is refused. The prediction
    is read in a child process limited to `read_timeout_s` and `read_memory_bytes` beyond the
    caller's size; the whole case runs in a child limited to `case_timeout_s` / `case_memory_bytes`
    (a case that breaks those is refused as SCORING_FAILED). Raises `LoadError` only when the
    *reference* cannot be used: that is the platform's problem, never the team's.
    """
    task = _CaseTask(
        Path(reference_path),
        None if prediction_path is None else Path(prediction_path),
        tuple(organs),
        nsd_definition,
        None if allowed_labels is None else tuple(allowed_labels),
        max_decompressed_bytes,
        read_timeout_s,
        read_memory_bytes,
    )
    _check_organs(task.organs)
    outcome = run_in_children([task.run], Limits(case_timeout_s, case_memory_bytes), processes=1)[0]
    return _case_score_of(outcome, task)


def score_many(
    pairs: Sequence[tuple[Path, Path | None]],
    organs: Sequence[OrganSpec],
    *,
    processes: int | None = None,
    nsd_definition: NsdDefinition = NsdDefinition.SURFEL,
    allowed_labels: Collection[int] | None = None,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    read_memory_bytes: int = DEFAULT_READ_MEMORY_BYTES,
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S,
    case_memory_bytes: int = DEFAULT_CASE_MEMORY_BYTES,
) -> list[CaseScore]:
    """`score_files` for many (reference, prediction) pairs, in parallel, results in the same order.

    `processes`: cases scored at once (default: the CPUs this process may use). Each case runs in its
    own child process: a case that crashes, times out or exhausts memory becomes that case's refusal
    (READER_CRASHED, READ_TIMEOUT or SCORING_FAILED) and never affects the others. Raises `LoadError`
    after all cases ran if a *reference* could not be used (a platform problem).
    """
    _check_organs(organs)
    tasks = [
        _CaseTask(
            Path(reference),
            None if prediction is None else Path(prediction),
            tuple(organs),
            nsd_definition,
            None if allowed_labels is None else tuple(allowed_labels),
            max_decompressed_bytes,
            read_timeout_s,
            read_memory_bytes,
        )
        for reference, prediction in pairs
    ]
    workers = processes if processes is not None else len(os.sched_getaffinity(0))
    outcomes = run_in_children(
        [task.run for task in tasks], Limits(case_timeout_s, case_memory_bytes), processes=workers
    )
    reference_errors = [outcome.error for outcome in outcomes if isinstance(outcome.error, LoadError)]
    if reference_errors:
        raise reference_errors[0]
    return [_case_score_of(outcome, task) for outcome, task in zip(outcomes, tasks, strict=True)]


@dataclass(frozen=True)
class _CaseTask:
    """One case of `score_files`, run in a child process by `run`."""

    reference_path: Path
    prediction_path: Path | None
    organs: tuple[OrganSpec, ...]
    nsd_definition: NsdDefinition
    allowed_labels: tuple[int, ...] | None
    max_decompressed_bytes: int
    read_timeout_s: float
    read_memory_bytes: int

    @property
    def labels(self) -> frozenset[int]:
        chosen = (
            self.allowed_labels if self.allowed_labels is not None else [organ.label for organ in self.organs]
        )
        return frozenset(chosen) | {0}

    def run(self) -> CaseScore:
        """Read the prediction in a child while the reference is read here, then score."""
        geometry = read_geometry(
            self.reference_path,
            max_decompressed_bytes=max(self.max_decompressed_bytes, DEFAULT_MAX_DECOMPRESSED_BYTES),
        )
        max_label = max(organ.label for organ in self.organs)
        if self.prediction_path is None:
            reference = self._load_reference(max_label)
            return _refused_case(
                reference,
                self.organs,
                RefusalCategory.MISSING_OUTPUT,
                "no output file was written for this case",
            )
        prediction_path = self.prediction_path
        out = shared_array(geometry.shape, compact_label_dtype(max(self.labels)))
        labels = self.labels

        def read_prediction() -> tuple[Box | None, ...]:
            loaded = load_prediction(
                prediction_path, geometry, labels, max_decompressed_bytes=self.max_decompressed_bytes, out=out
            )
            return loaded.extents

        with ChildProcess(read_prediction, Limits(self.read_timeout_s, self.read_memory_bytes)) as reader:
            reference = self._load_reference(max_label)
            try:
                prediction_extents = reader.result()
            except LoadError as error:
                return _refused_case(reference, self.organs, error.category, error.message)
            except ChildFailed as failure:
                category = (
                    RefusalCategory.READ_TIMEOUT if failure.timed_out else RefusalCategory.READER_CRASHED
                )
                message = f"reading the prediction {'took longer than the time limit' if failure.timed_out else str(failure)}"
                return _refused_case(reference, self.organs, category, message)
            except Exception as error:  # anything else the untrusted file provoked in the reader
                logger.warning("reading %s failed: %r", prediction_path, error)
                message = f"reading the prediction failed ({type(error).__name__}: {error})"
                return _refused_case(reference, self.organs, RefusalCategory.READER_CRASHED, message)
        spacing = reference.geometry.spacing_mm
        scores = tuple(
            _score_organ(
                reference.labels,
                out,
                reference.extents,
                prediction_extents,
                spacing,
                organ,
                self.nsd_definition,
            )
            for organ in self.organs
        )
        return CaseScore(organs=scores, refusal=None, message="")

    def _load_reference(self, max_label: int) -> LabelMap:
        # The limit protects against untrusted files; the reference gets at least the default.
        limit = max(self.max_decompressed_bytes, DEFAULT_MAX_DECOMPRESSED_BYTES)
        return load_reference(self.reference_path, max_label=max_label, max_decompressed_bytes=limit)


def _case_score_of(outcome: Outcome[CaseScore], task: _CaseTask) -> CaseScore:
    """The child's CaseScore, or, if the child failed while scoring, the worst scores for the case."""
    if outcome.error is None:
        assert outcome.value is not None
        return outcome.value
    if isinstance(outcome.error, LoadError):
        raise outcome.error
    logger.error("scoring %s against %s failed: %r", task.prediction_path, task.reference_path, outcome.error)
    reference = task._load_reference(max(organ.label for organ in task.organs))
    detail = (
        str(outcome.error)
        if isinstance(outcome.error, ChildFailed)
        else f"{type(outcome.error).__name__}: {outcome.error}"
    )
    return _refused_case(
        reference, task.organs, RefusalCategory.SCORING_FAILED, f"scoring this prediction failed ({detail})"
    )


def _refused_case(
    reference: LabelMap, organs: Sequence[OrganSpec], category: RefusalCategory, message: str
) -> CaseScore:
    voxel_ml = _voxel_ml(reference.geometry.spacing_mm)
    scores = []
    for organ in organs:
        box = _extent(reference.extents, organ.label)
        if box is None:
            scores.append(_absent(organ, predicted_volume_ml=math.nan))
            continue
        volume = int(np.count_nonzero(reference.labels[box] == organ.label)) * voxel_ml
        scores.append(
            OrganScore(
                organ.label, organ.name, OrganStatus.REFUSED, 0.0, 0.0, math.inf, math.inf, volume, math.nan
            )
        )
    return CaseScore(organs=tuple(scores), refusal=category, message=message)


def _score_organ(
    reference: np.ndarray,
    prediction: np.ndarray,
    reference_extents: Sequence[Box | None],
    prediction_extents: Sequence[Box | None],
    spacing: Spacing,
    organ: OrganSpec,
    nsd_definition: NsdDefinition,
) -> OrganScore:
    """Score one organ, working only inside its boxes in the reference and the prediction."""
    voxel_ml = _voxel_ml(spacing)
    reference_box = _extent(reference_extents, organ.label)
    prediction_box = _extent(prediction_extents, organ.label)
    predicted_mask = None if prediction_box is None else prediction[prediction_box] == organ.label
    predicted_voxels = 0 if predicted_mask is None else int(np.count_nonzero(predicted_mask))
    if reference_box is None:
        return _absent(organ, predicted_volume_ml=predicted_voxels * voxel_ml)
    reference_mask = reference[reference_box] == organ.label
    reference_voxels = int(np.count_nonzero(reference_mask))
    if predicted_mask is None or prediction_box is None:
        return OrganScore(
            organ.label,
            organ.name,
            OrganStatus.MISSED,
            0.0,
            0.0,
            math.inf,
            math.inf,
            reference_voxels * voxel_ml,
            0.0,
        )
    overlap = _intersection_voxels(reference_mask, reference_box, predicted_mask, prediction_box)
    reference_origin, prediction_origin = _origin(reference_box), _origin(prediction_box)
    forward, backward = _profiles(
        surfels(reference_mask, reference_origin, spacing),
        surfels(predicted_mask, prediction_origin, spacing),
        spacing,
    )
    if nsd_definition is NsdDefinition.VOXEL:
        voxel_forward, voxel_backward = _profiles(
            border_voxels(reference_mask, reference_origin),
            border_voxels(predicted_mask, prediction_origin),
            spacing,
        )
        nsd = normalized_surface_dice_float32(voxel_forward, voxel_backward, organ.nsd_tolerance_mm)
    else:
        nsd = normalized_surface_dice(forward, backward, organ.nsd_tolerance_mm)
    return OrganScore(
        label=organ.label,
        name=organ.name,
        status=OrganStatus.SCORED,
        dsc=dice(overlap, reference_voxels, predicted_voxels),
        nsd=nsd,
        hd95_mm=robust_hausdorff(forward, backward, 95.0),
        assd_mm=average_symmetric_surface_distance(forward, backward),
        reference_volume_ml=reference_voxels * voxel_ml,
        predicted_volume_ml=predicted_voxels * voxel_ml,
    )


def _profiles(
    reference: Surface, prediction: Surface, spacing: Spacing
) -> tuple[DirectedProfile, DirectedProfile]:
    return directed_profile(reference, prediction, spacing), directed_profile(prediction, reference, spacing)


def _intersection_voxels(
    reference_mask: np.ndarray, reference_box: Box, predicted_mask: np.ndarray, prediction_box: Box
) -> int:
    starts = [max(a.start, b.start) for a, b in zip(reference_box, prediction_box, strict=True)]
    stops = [min(a.stop, b.stop) for a, b in zip(reference_box, prediction_box, strict=True)]
    if any(start >= stop for start, stop in zip(starts, stops, strict=True)):
        return 0
    in_reference = tuple(
        slice(start - box.start, stop - box.start)
        for start, stop, box in zip(starts, stops, reference_box, strict=True)
    )
    in_prediction = tuple(
        slice(start - box.start, stop - box.start)
        for start, stop, box in zip(starts, stops, prediction_box, strict=True)
    )
    return int(np.count_nonzero(reference_mask[in_reference] & predicted_mask[in_prediction]))


def _absent(organ: OrganSpec, *, predicted_volume_ml: float) -> OrganScore:
    nan = math.nan
    return OrganScore(
        organ.label, organ.name, OrganStatus.ABSENT, nan, nan, nan, nan, 0.0, predicted_volume_ml
    )


def _extent(extents: Sequence[Box | None], label: int) -> Box | None:
    return extents[label - 1] if label - 1 < len(extents) else None


def _origin(box: Box) -> tuple[int, int, int]:
    return (box[0].start, box[1].start, box[2].start)


def _voxel_ml(spacing: Spacing) -> float:
    return spacing[0] * spacing[1] * spacing[2] / 1000.0


def _checked_spacing(spacing_mm: Sequence[float]) -> Spacing:
    spacing = tuple(float(value) for value in spacing_mm)
    if len(spacing) != 3 or not all(math.isfinite(value) and value > 0 for value in spacing):
        raise ValueError(f"spacing_mm must be three positive numbers of mm, not {spacing_mm!r}")
    return (spacing[0], spacing[1], spacing[2])


def _check_organs(organs: Sequence[OrganSpec]) -> None:
    if not organs:
        raise ValueError("no organs to score")
    labels = [organ.label for organ in organs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"organ labels must be unique, got {labels}")
