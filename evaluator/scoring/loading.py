"""Loading label maps safely: the trusted reference, and untrusted predictions checked against it.

A prediction is scored only if it is what the container contract asks for: a 3-D NIfTI label map with
the input image's shape and affine (within 1e-3 mm anywhere in the volume), no intensity scaling,
finite integral values and only the benchmark's labels. Anything else raises `LoadError` with a
`RefusalCategory` and a message the team can act on; `evaluator.scoring.cases` then scores the case worst.
Messages describe the prediction and the input image the team was given, never the ground truth.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from evaluator.scoring.extents import Box, label_extents
from evaluator.scoring.nifti import RawImage, read_file_bytes, read_nifti
from evaluator.scoring.refusals import LoadError, RefusalCategory

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "AFFINE_TOLERANCE_MM",
    "Geometry",
    "LabelMap",
    "LoadError",
    "RefusalCategory",
    "compact_label_dtype",
    "load_prediction",
    "load_reference",
    "read_geometry",
    "voxel_grid_mismatch",
]

DEFAULT_MAX_DECOMPRESSED_BYTES = 2 * 1024**3
AFFINE_TOLERANCE_MM = 1e-3
_CHECK_CHUNK_VOXELS = 8 * 1024 * 1024


@dataclass(frozen=True)
class Geometry:
    """Where a label map's voxels are: shape, voxel-to-world affine (mm) and voxel spacing (mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]


@dataclass(frozen=True)
class LabelMap:
    """A checked 3-D label map: Fortran-ordered unsigned labels, its geometry and each label's box.

    `extents[label - 1]` is the bounding box of `label` (see `evaluator.scoring.extents`), None if absent,
    for labels 1..len(extents).
    """

    labels: np.ndarray
    geometry: Geometry
    extents: tuple[Box | None, ...]


def compact_label_dtype(max_label: int) -> np.dtype:
    """The smallest unsigned dtype holding labels 0..`max_label`.

    >>> compact_label_dtype(9), compact_label_dtype(300)
    (dtype('uint8'), dtype('uint16'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label {max_label} is too large")


def read_geometry(
    path: Path, *, role: str = "reference", max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
) -> Geometry:
    """The geometry of the 3-D volume at `path`, from its header only (the voxels are not inflated).

    The header must hold what `load_reference` asks of a reference: a qform or sform, positive finite
    spacing. `role` ("reference", "image") names the file in the `LoadError` messages.
    """
    found: list[Geometry] = []

    def capture(header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype) -> None:
        found.append(_header_geometry(header, shape, role))
        raise _HeaderOnly

    try:
        read_nifti(
            _read(path, max_decompressed_bytes, role),
            max_decompressed_bytes=max_decompressed_bytes,
            check_header=capture,
        )
    except _HeaderOnly:
        return found[0]
    raise AssertionError("unreachable: the header check always runs")  # pragma: no cover


def load_reference(
    path: Path, *, max_label: int | None = None, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
) -> LabelMap:
    """Load a ground-truth label map (trusted, but checked: a bad one is the platform's fault).

    Checks: single-file NIfTI with intact gzip, 3-D, a qform or sform, no scaling, finite
    non-negative integral values. Labels above `max_label` (default: the largest present) are kept in
    the array but get no extent. Raises `LoadError` describing the reference file.
    """
    geometry: list[Geometry] = []

    def check(header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype) -> None:
        geometry.append(_header_geometry(header, shape, "reference"))
        _check_no_scaling(header, "the reference")

    raw = read_nifti(
        _read(path, max_decompressed_bytes, "reference"),
        max_decompressed_bytes=max_decompressed_bytes,
        check_header=check,
    )
    voxels = raw.array()
    low, high = _value_range(voxels, "the reference")
    if low < 0:
        raise LoadError(
            RefusalCategory.UNKNOWN_LABELS, f"the reference {Path(path).name} has negative labels"
        )
    labels = (
        voxels if voxels.dtype == compact_label_dtype(high) else _converted(voxels, compact_label_dtype(high))
    )
    extents = label_extents(labels, high if max_label is None else max_label)
    return LabelMap(labels=labels, geometry=geometry[0], extents=extents)


def load_prediction(
    path: Path,
    reference: Geometry,
    allowed_labels: Collection[int],
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> LabelMap:
    """Load a team's prediction and check it against the reference's geometry and the label set.

    `reference`: the geometry the prediction must have (the input image's, which is the reference's).
    `allowed_labels`: the benchmark's label ids (0, background, is always allowed). The labels come
    back as `compact_label_dtype(max(allowed_labels))`, without a copy when the file already stores
    that type. Raises `LoadError` with the refusal category and a message for the team.

    This function parses untrusted bytes: call it in a process you can afford to lose, as
    `evaluator.scoring.cases` does.
    """
    allowed = frozenset(int(label) for label in allowed_labels) | {0}
    target_dtype = compact_label_dtype(max(allowed))

    def check(header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if shape == reference.shape:
            _check_has_affine(header)
        mismatch = voxel_grid_mismatch(shape, _best_affine(header), reference)
        if mismatch is not None and mismatch.category is RefusalCategory.WRONG_AFFINE:
            raise LoadError(mismatch.category, f"{mismatch.message}; save the prediction with the input image's affine")
        if mismatch is not None:
            raise mismatch
        _check_no_scaling(header, "the prediction")

    raw = read_nifti(
        read_file_bytes(path, max_bytes=max_decompressed_bytes),
        max_decompressed_bytes=max_decompressed_bytes,
        check_header=check,
    )
    labels = _checked_labels(raw, allowed, target_dtype)
    extents = label_extents(labels, max(allowed))
    unknown = sorted(
        label for label, box in enumerate(extents, start=1) if box is not None and label not in allowed
    )
    if unknown:
        raise LoadError(RefusalCategory.UNKNOWN_LABELS, _unknown_labels_message(unknown, allowed))
    return LabelMap(labels=labels, geometry=reference, extents=extents)


class _HeaderOnly(Exception):
    """Stops `read_nifti` once the header has been seen."""


def _read(path: Path, max_bytes: int, role: str) -> bytes:
    try:
        return read_file_bytes(path, max_bytes=max_bytes)
    except LoadError as error:
        raise LoadError(error.category, f"{role} {Path(path).name}: {error.message}") from None


def voxel_grid_mismatch(
    shape: tuple[int, ...],
    affine: np.ndarray,
    expected: Geometry,
    *,
    what: str = "the prediction",
    expected_name: str = "the input image",
) -> LoadError | None:
    """Why a volume of `shape` and voxel-to-world `affine` is not on `expected`'s voxel grid; None if it is.

    Same grid: the same shape, and each of the eight corner voxel centres within `AFFINE_TOLERANCE_MM`
    (1e-3 mm) of where `expected` puts it, so affines that differ only by rounding pass and a shifted,
    flipped, rescaled or rotated grid does not. The result is the refusal to raise: WRONG_SHAPE or
    WRONG_AFFINE, with a message saying how the grids differ, naming the volumes `what` and
    `expected_name`. The scorer refuses predictions by this rule, and benchmark import checks each
    hidden image against its reference with it.
    """
    if shape != expected.shape:
        return LoadError(
            RefusalCategory.WRONG_SHAPE, f"{what} has shape {shape}; {expected_name} has shape {expected.shape}"
        )
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, expected.shape[0] - 1)
            for j in (0, expected.shape[1] - 1)
            for k in (0, expected.shape[2] - 1)
        ]
    )
    with np.errstate(invalid="ignore", over="ignore"):
        error_mm = np.linalg.norm((corners @ affine.T - corners @ expected.affine.T)[:, :3], axis=1).max()
    if np.isfinite(error_mm) and error_mm <= AFFINE_TOLERANCE_MM:
        return None
    return LoadError(RefusalCategory.WRONG_AFFINE, _affine_difference(affine, expected, what, expected_name))


def _header_geometry(header: nib.Nifti1Header, shape: tuple[int, ...], role: str) -> Geometry:
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise LoadError(RefusalCategory.MISSING_AFFINE, f"the {role} has neither a qform nor an sform")
    spacing = tuple(float(value) for value in header.get_zooms()[:3])
    if not all(np.isfinite(value) and value > 0 for value in spacing):
        raise LoadError(RefusalCategory.WRONG_AFFINE, f"the {role}'s voxel spacing {spacing} is not positive")
    affine = np.asarray(header.get_best_affine(), np.float64)
    if not np.all(np.isfinite(affine)):
        raise LoadError(RefusalCategory.WRONG_AFFINE, f"the {role}'s affine has non-finite entries")
    return Geometry(
        shape=(shape[0], shape[1], shape[2]), affine=affine, spacing_mm=(spacing[0], spacing[1], spacing[2])
    )


def _check_has_affine(header: nib.Nifti1Header) -> None:
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise LoadError(
            RefusalCategory.MISSING_AFFINE,
            "the prediction has neither a qform nor an sform (both codes are 0); save it with the input "
            "image's affine, e.g. nib.Nifti1Image(labels, image.affine, image.header)",
        )


def _best_affine(header: nib.Nifti1Header) -> np.ndarray:
    """The header's voxel-to-world affine; all NaN when nibabel cannot build one (an untrusted header)."""
    try:
        return np.asarray(header.get_best_affine(), np.float64)
    except Exception:
        return np.full((4, 4), np.nan)


def _affine_difference(affine: np.ndarray, expected: Geometry, what: str, expected_name: str) -> str:
    """Say how `affine` differs from `expected`'s, in terms a person can check."""
    if not np.all(np.isfinite(affine)):
        return f"{what}'s affine has non-finite entries"
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    expected_spacing = np.linalg.norm(expected.affine[:3, :3], axis=0)
    if not np.allclose(spacing, expected_spacing, rtol=0, atol=1e-4):
        return f"{what}'s voxel spacing is {_mm(spacing)} mm; {expected_name} has {_mm(expected_spacing)} mm"
    codes, expected_codes = nib.aff2axcodes(affine), nib.aff2axcodes(expected.affine)
    if codes != expected_codes:
        return (
            f"{what}'s orientation is {''.join(str(c) for c in codes)}; {expected_name} is "
            f"{''.join(str(c) for c in expected_codes)} (axes flipped or swapped)"
        )
    shift = affine[:3, 3] - expected.affine[:3, 3]
    if np.linalg.norm(shift) > AFFINE_TOLERANCE_MM:
        return f"{what}'s origin is shifted by {_mm(shift)} mm from {expected_name}'s"
    return f"{what}'s affine differs from {expected_name}'s (rotation or shear)"


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{value:.4g}" for value in values) + ")"


def _check_no_scaling(header: nib.Nifti1Header, what: str) -> None:
    """NIfTI scales voxels by scl_slope/scl_inter when the slope is nonzero; labels must not be scaled."""
    slope, intercept = float(header["scl_slope"]), float(header["scl_inter"])
    if slope == 0 or np.isnan(slope):
        return  # "no scaling" per the NIfTI standard
    if slope == 1 and (intercept == 0 or np.isnan(intercept)):
        return
    raise LoadError(
        RefusalCategory.SCALED_VALUES,
        f"{what} sets scl_slope={slope:g}, scl_inter={intercept:g}; store the labels themselves "
        "(scl_slope 1 or 0, scl_inter 0)",
    )


def _value_range(voxels: np.ndarray, what: str) -> tuple[int, int]:
    """(min, max) of a label map, refusing NaN, infinities and non-integral values first."""
    if voxels.size == 0:
        return 0, 0
    if voxels.dtype.kind == "f":
        for chunk in _chunks(voxels):
            if not np.isfinite(chunk).all():
                raise LoadError(
                    RefusalCategory.NON_FINITE_VALUES,
                    f"{what} contains NaN or infinite values; write integer labels",
                )
            if not np.array_equal(chunk, np.trunc(chunk)):
                raise LoadError(
                    RefusalCategory.NON_INTEGER_VALUES,
                    f"{what} contains non-integer values (e.g. probabilities); write integer labels",
                )
    low, high = voxels.min(), voxels.max()
    if voxels.dtype.kind == "f" and (low < np.iinfo(np.int64).min or high > np.iinfo(np.int64).max):
        raise LoadError(RefusalCategory.UNKNOWN_LABELS, f"{what} contains values beyond any label id")
    return int(low), int(high)


def _checked_labels(raw: RawImage, allowed: frozenset[int], target_dtype: np.dtype) -> np.ndarray:
    """The prediction's voxels as `target_dtype`, after checking they are finite integral labels."""
    voxels = raw.array()
    low, high = _value_range(voxels, "the prediction")
    if low < 0 or high > max(allowed):
        outside = voxels[(voxels < 0) | (voxels > max(allowed))]
        found = sorted({int(value) for value in np.unique(outside)[:20]})
        raise LoadError(RefusalCategory.UNKNOWN_LABELS, _unknown_labels_message(found, allowed))
    return voxels if voxels.dtype == target_dtype else _converted(voxels, target_dtype)


def _converted(voxels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    converted = np.empty(voxels.shape, dtype, order="F")
    for chunk, destination in zip(_chunks(voxels), _chunks(converted), strict=True):
        np.copyto(destination, chunk, casting="unsafe")
    return converted


def _chunks(voxels: np.ndarray) -> list[np.ndarray]:
    """Slabs along the last (slowest, for Fortran order) axis of at most ~8M voxels each."""
    per_slab = max(1, voxels.shape[0] * voxels.shape[1])
    step = max(1, _CHECK_CHUNK_VOXELS // per_slab)
    return [voxels[:, :, start : start + step] for start in range(0, voxels.shape[2], step)]


def _unknown_labels_message(found: list[int], allowed: frozenset[int]) -> str:
    shown = ", ".join(str(value) for value in found[:10]) + (", ..." if len(found) > 10 else "")
    return f"the prediction contains label(s) {shown}; this benchmark's labels are {', '.join(str(v) for v in sorted(allowed))}"
