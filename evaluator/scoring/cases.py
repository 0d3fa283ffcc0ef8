"""Scoring a case: every organ's DSC, NSD, HD95, ASSD and volumes, from arrays or from files.

`score_case` scores two label maps in memory. `score_files` scores a reference file and a team's
prediction file in a forked child process with time and memory limits: the reference is read, then
the prediction is read and checked under its own, tighter limits, then every organ is scored. So a
malformed or hostile prediction can neither crash the caller nor be scored as something it is not:
it is refused with a named category, and scores worst. `score_many` does this for many cases in
parallel, one child per case, as many at a time as there are cores.

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
from pathlib import Path

import numpy as np

from evaluator.scoring.distances import DirectedProfile, directed_profile
from evaluator.scoring.extents import Box, label_extents
from evaluator.scoring.isolation import (
    ChildFailed,
    Limits,
    Outcome,
    checkpoint,
    limit_memory,
    run_in_children,
)
from evaluator.scoring.loading import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    Geometry,
    LabelMap,
    LoadError,
    RefusalCategory,
    load_prediction,
    load_reference,
)
from evaluator.scoring.metrics import (
    average_symmetric_surface_distance,
    dice,
    normalized_surface_dice,
    normalized_surface_dice_float32,
    robust_hausdorff,
)
from evaluator.scoring.organs import OrganSpec
from evaluator.scoring.reference_cache import CachedOrgan, CachedReference, ReferenceCacheError
from evaluator.scoring.reference_cache import read as read_reference_cache
from evaluator.scoring.scores import CaseScore, NsdDefinition, OrganScore, OrganStatus
from evaluator.scoring.surface import Surface, border_voxels, surfels

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

    >>> from evaluator.scoring.organs import OrganSpec
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
    label set (default: the organs' labels); a prediction with other labels is refused.
    `max_decompressed_bytes` caps what the prediction may inflate to. The case runs in a child
    process limited to `case_timeout_s` and `case_memory_bytes` of address space beyond the caller's;
    while it reads the prediction the limits are `read_timeout_s` and `read_memory_bytes` (breaking
    them: READ_TIMEOUT or READER_CRASHED; breaking the case limits while scoring: SCORING_FAILED).
    Raises `LoadError` only when the *reference* cannot be used: that is the platform's problem,
    never the team's.
    """
    [case] = score_many(
        [(reference_path, prediction_path)],
        organs,
        processes=1,
        nsd_definition=nsd_definition,
        allowed_labels=allowed_labels,
        max_decompressed_bytes=max_decompressed_bytes,
        read_timeout_s=read_timeout_s,
        read_memory_bytes=read_memory_bytes,
        case_timeout_s=case_timeout_s,
        case_memory_bytes=case_memory_bytes,
    )
    return case


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
    reference_caches: Sequence[Path | None] | None = None,
) -> list[CaseScore]:
    """`score_files` for many (reference, prediction) pairs, in parallel, results in the same order.

    `processes`: cases scored at once (default: the CPUs this process may use). Each case runs in its
    own child process: a case that crashes, times out or exhausts memory becomes that case's refusal
    (READER_CRASHED, READ_TIMEOUT or SCORING_FAILED) and never affects the others. Raises `LoadError`
    after all cases ran if a *reference* could not be used (a platform problem).
    `reference_caches`: per pair, the directory of its reference's cache entry
    (`evaluator.scoring.reference_cache`) or None. An entry is used only if it was built from that
    reference file's content by this evaluator version; otherwise the reference file is read. Either
    way the scores are the same.
    """
    _check_organs(organs)
    caches = list(reference_caches) if reference_caches is not None else [None] * len(pairs)
    if len(caches) != len(pairs):
        raise ValueError(f"{len(caches)} reference caches for {len(pairs)} cases")
    labels = (
        frozenset(organ.label for organ in organs) if allowed_labels is None else frozenset(allowed_labels)
    )
    # Phase 1 of a case, between its two checkpoints, is reading the prediction: it has its own limits.
    limits = Limits(case_timeout_s, max(case_memory_bytes, read_memory_bytes), (None, read_timeout_s))
    tasks = [
        _CaseTask(
            reference_path=Path(reference),
            prediction_path=None if prediction is None else Path(prediction),
            organs=tuple(organs),
            nsd_definition=nsd_definition,
            allowed_labels=labels | {0},
            max_decompressed_bytes=max_decompressed_bytes,
            read_memory_bytes=read_memory_bytes,
            case_memory_bytes=case_memory_bytes,
            reference_cache=cache,
        )
        for (reference, prediction), cache in zip(pairs, caches, strict=True)
    ]
    workers = processes if processes is not None else len(os.sched_getaffinity(0))
    outcomes = run_in_children([task.run for task in tasks], limits, processes=workers)
    for outcome, task in zip(outcomes, tasks, strict=True):
        _raise_if_reference_failed(outcome, task)
    return [_case_score_of(outcome, task) for outcome, task in zip(outcomes, tasks, strict=True)]


@dataclass(frozen=True)
class _CaseTask:
    """One case of `score_files`, run in a child process by `run`."""

    reference_path: Path
    prediction_path: Path | None
    organs: tuple[OrganSpec, ...]
    nsd_definition: NsdDefinition
    allowed_labels: frozenset[int]
    max_decompressed_bytes: int
    read_memory_bytes: int
    case_memory_bytes: int
    reference_cache: Path | None = None

    def run(self) -> CaseScore:
        """Read the reference, then the prediction, then score (in the case's child process).

        Checkpoints tell the parent which phase a crash or timeout happened in: before the first,
        reading the reference (a platform problem); before the second, reading the prediction.
        """
        cached = self._read_cache()
        # With a cache entry the reference's voxels are never decoded: its organs' masks are cached.
        reference = self._load_reference() if cached is None else None
        geometry = cached.geometry if cached is not None else _loaded(reference).geometry
        checkpoint()
        try:
            prediction = self._load_prediction(geometry)
        except LoadError as error:
            return _refused_case(_reference_map(reference, cached), self.organs, error.category, error.message)
        except MemoryError:
            raise
        except Exception as error:  # anything else the untrusted file provoked in the reader
            logger.warning("reading %s failed: %r", self.prediction_path, error)
            message = f"reading the prediction failed unexpectedly ({type(error).__name__})"
            return _refused_case(
                _reference_map(reference, cached), self.organs, RefusalCategory.READER_CRASHED, message
            )
        checkpoint()
        limit_memory(self.case_memory_bytes)
        scores = tuple(
            _score_organ(
                None if reference is None else reference.labels,
                prediction.labels,
                cached.extents if cached is not None else _loaded(reference).extents,
                prediction.extents,
                geometry.spacing_mm,
                organ,
                self.nsd_definition,
                None if cached is None else cached.organs.get(organ.label),
            )
            for organ in self.organs
        )
        return CaseScore(organs=scores, refusal=None, message="")

    def _read_cache(self) -> CachedReference | None:
        """The reference's cache entry, if one was given and holds this very reference; else None."""
        if self.reference_cache is None:
            return None
        try:
            return read_reference_cache(self.reference_cache, self.reference_path)
        except (ReferenceCacheError, OSError) as error:
            logger.warning("not using the reference cache of %s: %s", self.reference_path, error)
            return None

    def _load_prediction(self, reference: Geometry) -> LabelMap:
        if self.prediction_path is None:
            raise LoadError(RefusalCategory.MISSING_OUTPUT, "no output file was written for this case")
        limit_memory(self.read_memory_bytes)
        return load_prediction(
            self.prediction_path,
            reference,
            self.allowed_labels,
            max_decompressed_bytes=self.max_decompressed_bytes,
        )

    @property
    def _reference_limit(self) -> int:
        # The size limit protects against untrusted files; the reference gets at least the default.
        return max(self.max_decompressed_bytes, DEFAULT_MAX_DECOMPRESSED_BYTES)

    def _load_reference(self) -> LabelMap:
        max_label = max(organ.label for organ in self.organs)
        return load_reference(
            self.reference_path, max_label=max_label, max_decompressed_bytes=self._reference_limit
        )


def _loaded(reference: LabelMap | None) -> LabelMap:
    assert reference is not None, "the reference is read whenever there is no cache entry"
    return reference


def _reference_map(reference: LabelMap | None, cached: CachedReference | None) -> LabelMap:
    """The reference as a label map: as read, or rebuilt from its cache entry (for a refused case)."""
    if reference is not None:
        return reference
    assert cached is not None
    return cached.label_map()


def _raise_if_reference_failed(outcome: Outcome[CaseScore], task: _CaseTask) -> None:
    """Raise if the case failed before its first checkpoint, i.e. while reading the reference."""
    if isinstance(outcome.error, LoadError) or (outcome.error is not None and outcome.checkpoints == 0):
        if isinstance(outcome.error, LoadError):
            raise outcome.error
        raise LoadError(
            RefusalCategory.READER_CRASHED,
            f"reading the reference {task.reference_path} failed: {outcome.error}",
        )


def _case_score_of(outcome: Outcome[CaseScore], task: _CaseTask) -> CaseScore:
    """The child's CaseScore, or the worst scores when it failed reading the prediction or scoring."""
    if outcome.error is None:
        assert outcome.value is not None
        return outcome.value
    error = outcome.error
    if outcome.checkpoints == 1:  # while reading the prediction
        if isinstance(error, ChildFailed) and error.timed_out:
            category, message = (
                RefusalCategory.READ_TIMEOUT,
                "reading the prediction took longer than the time limit",
            )
        else:
            category, message = (
                RefusalCategory.READER_CRASHED,
                f"reading the prediction failed: {_reason(error)}",
            )
    else:
        category, message = (
            RefusalCategory.SCORING_FAILED,
            f"scoring this prediction failed: {_reason(error)}",
        )
    logger.error("case %s / %s: %s (%r)", task.reference_path, task.prediction_path, message, error)
    return _refused_case(task._load_reference(), task.organs, category, message)


def _reason(error: BaseException) -> str:
    """Why a child failed, for the team: our own failure descriptions, else only the exception type
    (its text may name paths on the scoring host)."""
    return str(error) if isinstance(error, ChildFailed) else f"unexpected {type(error).__name__}"


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
    reference: np.ndarray | None,
    prediction: np.ndarray,
    reference_extents: Sequence[Box | None],
    prediction_extents: Sequence[Box | None],
    spacing: Spacing,
    organ: OrganSpec,
    nsd_definition: NsdDefinition,
    cached: CachedOrgan | None = None,
) -> OrganScore:
    """Score one organ, working only inside its boxes in the reference and the prediction.

    `cached`: the organ's voxel count, mask and surfaces from the reference cache, computed by the
    same functions from the same mask, so they replace computing them here without changing a number;
    `reference` (the label map) may then be None.
    """
    voxel_ml = _voxel_ml(spacing)
    reference_box = _extent(reference_extents, organ.label)
    prediction_box = _extent(prediction_extents, organ.label)
    predicted_mask = None if prediction_box is None else prediction[prediction_box] == organ.label
    predicted_voxels = 0 if predicted_mask is None else int(np.count_nonzero(predicted_mask))
    if reference_box is None:
        return _absent(organ, predicted_volume_ml=predicted_voxels * voxel_ml)
    if predicted_mask is None or prediction_box is None:
        reference_voxels = (
            cached.voxels if cached is not None else int(np.count_nonzero(_mask(reference, reference_box, organ)))
        )
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
    reference_mask = cached.mask if cached is not None else _mask(reference, reference_box, organ)
    reference_voxels = cached.voxels if cached is not None else int(np.count_nonzero(reference_mask))
    overlap = _intersection_voxels(reference_mask, reference_box, predicted_mask, prediction_box)
    reference_origin, prediction_origin = _origin(reference_box), _origin(prediction_box)
    forward, backward = _profiles(
        cached.surfels if cached is not None else surfels(reference_mask, reference_origin, spacing),
        surfels(predicted_mask, prediction_origin, spacing),
        spacing,
    )
    if nsd_definition is NsdDefinition.VOXEL:
        voxel_forward, voxel_backward = _profiles(
            cached.border if cached is not None else border_voxels(reference_mask, reference_origin),
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


def _mask(labels: np.ndarray | None, box: Box, organ: OrganSpec) -> np.ndarray:
    assert labels is not None, "without a cached organ the reference's labels are needed"
    return labels[box] == organ.label


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
