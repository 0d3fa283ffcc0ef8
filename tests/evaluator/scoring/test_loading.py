"""Untrusted predictions: every malformed file is refused with a named category and scores worst."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import evaluator.scoring.nifti as nifti
from evaluator.scoring.cases import CaseScore, OrganStatus, score_case, score_files
from evaluator.scoring.loading import (
    LoadError,
    RefusalCategory,
    load_prediction,
    load_reference,
    read_geometry,
)
from evaluator.scoring.organs import OrganSpec
from tests.evaluator.nifti_files import AFFINE, SPACING_MM, gz, nifti_bytes, write, write_label_map

ORGANS = (OrganSpec(1, "liver"), OrganSpec(2, "spleen"), OrganSpec(3, "pancreas"))
SHAPE = (10, 12, 8)


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 3:8, 2:5] = 1
    labels[7:9, 1:3, 4:7] = 2
    return labels  # pancreas (3) absent


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_label_map(tmp_path / "reference.nii.gz", _labels())


def _score(reference: Path, prediction: Path | None, **options: object) -> CaseScore:
    return score_files(reference, prediction, ORGANS, **options)  # type: ignore[arg-type]


def assert_refused_worst(case: CaseScore, category: RefusalCategory) -> None:
    assert case.refusal is category, case.message
    assert case.message
    liver, spleen, pancreas = case.organs
    for organ in (liver, spleen):
        assert organ.status is OrganStatus.REFUSED
        assert (organ.dsc, organ.nsd, organ.hd95_mm, organ.assd_mm) == (0.0, 0.0, math.inf, math.inf)
        assert organ.reference_volume_ml > 0 and math.isnan(organ.predicted_volume_ml)
    assert pancreas.status is OrganStatus.ABSENT and math.isnan(pancreas.dsc)


def test_a_good_prediction_scores_like_the_arrays(reference: Path, tmp_path: Path) -> None:
    prediction = np.roll(_labels(), 1, axis=0)
    case = _score(reference, write_label_map(tmp_path / "p.nii.gz", prediction))
    assert case.refusal is None and case.message == ""
    spacing = tuple(float(s) for s in nib.load(reference).header.get_zooms())
    assert repr(case.organs) == repr(score_case(_labels(), prediction, spacing, ORGANS))  # repr: NaN == NaN


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda a: nifti_bytes(a), id="uncompressed-nii"),
        pytest.param(lambda a: gz(nifti_bytes(a, nifti2=True)), id="nifti2"),
        pytest.param(lambda a: gz(nifti_bytes(a.astype(">i2"), endianness=">")), id="big-endian-int16"),
        pytest.param(lambda a: gz(nifti_bytes(a.astype(np.float32))), id="integral-float32"),
        pytest.param(lambda a: gz(nifti_bytes(a.astype(np.int64))), id="int64"),
        pytest.param(lambda a: gz(nifti_bytes(a[..., None])), id="trailing-singleton-4th-dimension"),
        pytest.param(lambda a: gz(nifti_bytes(a, scl_slope=1.0, scl_inter=0.0)), id="identity-scaling"),
        pytest.param(
            lambda a: gz(nifti_bytes(a, scl_slope=0.0, scl_inter=5.0)), id="zero-slope-means-no-scaling"
        ),
        pytest.param(lambda a: gz(nifti_bytes(a, qform_code=0)), id="sform-only"),
        pytest.param(lambda a: gz(nifti_bytes(a, sform_code=0)), id="qform-only"),
        pytest.param(
            lambda a: gz(nifti_bytes(a, affine=AFFINE + np.diag([0, 0, 0, 0]) + _shift(2e-4))),
            id="shift-within-tolerance",
        ),
        pytest.param(lambda a: _two_members(nifti_bytes(a)), id="multi-member-gzip"),
        pytest.param(lambda a: gz(nifti_bytes(a)) + b"\x00" * 64, id="zero-padding-after-gzip"),
    ],
)
def test_valid_variants_are_accepted(
    reference: Path, tmp_path: Path, variant: Callable[[np.ndarray], bytes]
) -> None:
    case = _score(reference, write(tmp_path / "p.nii.gz", variant(_labels())))
    assert case.refusal is None, case.message
    assert [organ.dsc for organ in case.organs[:2]] == [1.0, 1.0]


def _shift(mm: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[:3, 3] = mm
    return shift


def _two_members(data: bytes) -> bytes:
    return gzip.compress(data[:1000]) + gzip.compress(data[1000:])


def _cut(content: bytes, fraction: int) -> bytes:
    """The first 1/fraction of `content` (at least the 10-byte gzip header)."""
    return content[: max(12, len(content) // fraction)]


def _bad_crc(a: np.ndarray) -> bytes:
    content = bytearray(gz(nifti_bytes(a)))
    content[-8] ^= 0xFF  # CRC-32 of the trailer
    return bytes(content)


def _corrupt_deflate(a: np.ndarray) -> bytes:
    content = bytearray(gz(nifti_bytes(a)))
    for index in range(len(content) // 2, len(content) // 2 + 8):
        content[index] ^= 0x5A
    return bytes(content)


def _gzip_bomb(a: np.ndarray) -> bytes:
    huge = nib.Nifti1Header()
    huge.set_data_dtype(np.uint8)
    huge.set_data_shape((4096, 4096, 256))  # 4 GiB declared by a file of a few hundred bytes
    huge.set_sform(AFFINE, 1)
    huge["vox_offset"] = 352
    return gz(huge.binaryblock + b"\x00" * 4 + b"\x00" * 1_000_000)


BAD_FILES: list = [
    pytest.param(lambda a: _cut(gz(nifti_bytes(a)), 2), RefusalCategory.CORRUPT_GZIP, id="truncated-gzip"),
    pytest.param(
        lambda a: _cut(gz(nifti_bytes(a)), 20), RefusalCategory.CORRUPT_GZIP, id="truncated-inside-the-header"
    ),
    pytest.param(lambda a: gz(nifti_bytes(a))[:-4], RefusalCategory.CORRUPT_GZIP, id="truncated-trailer"),
    pytest.param(_bad_crc, RefusalCategory.CORRUPT_GZIP, id="bad-crc"),
    pytest.param(_corrupt_deflate, RefusalCategory.CORRUPT_GZIP, id="corrupted-deflate-data"),
    pytest.param(
        lambda a: gz(nifti_bytes(a)) + b"garbage!", RefusalCategory.CORRUPT_GZIP, id="garbage-after-gzip"
    ),
    pytest.param(_gzip_bomb, RefusalCategory.TOO_LARGE, id="gzip-bomb-declaring-4-GiB"),
    pytest.param(
        lambda a: gz(nifti_bytes(np.stack([a, a], axis=-1))), RefusalCategory.WRONG_DIMENSIONS, id="4d"
    ),
    pytest.param(lambda a: gz(nifti_bytes(a[:, :, 0])), RefusalCategory.WRONG_DIMENSIONS, id="2d"),
    pytest.param(lambda a: gz(nifti_bytes(a[:, :, :-1])), RefusalCategory.WRONG_SHAPE, id="wrong-shape"),
    pytest.param(
        lambda a: gz(nifti_bytes(np.ascontiguousarray(a.transpose(1, 0, 2)))),
        RefusalCategory.WRONG_SHAPE,
        id="transposed",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, affine=AFFINE @ np.diag([-1, 1, 1, 1]))),
        RefusalCategory.WRONG_AFFINE,
        id="flipped-orientation",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, affine=AFFINE + _shift(0.5))),
        RefusalCategory.WRONG_AFFINE,
        id="shifted-origin",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, affine=AFFINE @ np.diag([1, 1, 2, 1]))),
        RefusalCategory.WRONG_AFFINE,
        id="other-spacing",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, qform_code=0, sform_code=0)),
        RefusalCategory.MISSING_AFFINE,
        id="no-qform-no-sform",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, scl_slope=2.0, scl_inter=0.0)),
        RefusalCategory.SCALED_VALUES,
        id="scl-slope",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a, scl_slope=1.0, scl_inter=1.0)),
        RefusalCategory.SCALED_VALUES,
        id="scl-inter",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a.astype(np.float32) + 0.5)),
        RefusalCategory.NON_INTEGER_VALUES,
        id="non-integral-floats",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(np.where(a == 1, np.nan, a).astype(np.float32))),
        RefusalCategory.NON_FINITE_VALUES,
        id="nan",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(np.where(a == 1, np.inf, a).astype(np.float64))),
        RefusalCategory.NON_FINITE_VALUES,
        id="inf",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(np.where(a == 1, 12, a).astype(np.uint8))),
        RefusalCategory.UNKNOWN_LABELS,
        id="label-12",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(np.where(a == 1, -1, a).astype(np.int16))),
        RefusalCategory.UNKNOWN_LABELS,
        id="negative-label",
    ),
    pytest.param(
        lambda a: gz(nifti_bytes(a.astype(np.complex64))), RefusalCategory.UNSUPPORTED_DATA_TYPE, id="complex"
    ),
    pytest.param(lambda a: gz(nifti_bytes(a, datatype=128)), RefusalCategory.UNSUPPORTED_DATA_TYPE, id="rgb"),
    pytest.param(lambda a: b"this is not an image\n" * 50, RefusalCategory.NOT_NIFTI, id="text-file"),
    pytest.param(
        lambda a: gz(b"\x89PNG\r\n\x1a\n" + bytes(2000)), RefusalCategory.NOT_NIFTI, id="gzipped-png"
    ),
    pytest.param(lambda a: b"", RefusalCategory.NOT_NIFTI, id="empty-file"),
    pytest.param(
        lambda a: gz(nifti_bytes(a, magic=b"ni1")), RefusalCategory.NOT_NIFTI, id="hdr-img-pair-header"
    ),
    pytest.param(lambda a: gz(nifti_bytes(a, vox_offset=0)), RefusalCategory.NOT_NIFTI, id="vox-offset-zero"),
    pytest.param(
        lambda a: gz(nifti_bytes(a)[:-100]), RefusalCategory.NOT_NIFTI, id="voxel-data-shorter-than-declared"
    ),
]


@pytest.mark.parametrize(("variant", "category"), BAD_FILES)
def test_malformed_prediction_is_refused_and_scores_worst(
    reference: Path, tmp_path: Path, variant: Callable[[np.ndarray], bytes], category: RefusalCategory
) -> None:
    case = _score(reference, write(tmp_path / "p.nii.gz", variant(_labels())))
    assert_refused_worst(case, category)


def test_nibabel_alone_decodes_a_bad_crc_silently(tmp_path: Path) -> None:
    # Why we inflate and verify the stream ourselves.
    path = write(tmp_path / "bad_crc.nii.gz", _bad_crc(_labels()))
    assert np.array_equal(np.asanyarray(nib.load(path).dataobj), _labels())


def test_missing_output_scores_worst(reference: Path, tmp_path: Path) -> None:
    assert_refused_worst(_score(reference, None), RefusalCategory.MISSING_OUTPUT)
    assert_refused_worst(_score(reference, tmp_path / "never_written.nii.gz"), RefusalCategory.MISSING_OUTPUT)


def test_a_symlink_to_the_ground_truth_is_refused(reference: Path, tmp_path: Path) -> None:
    link = tmp_path / "p.nii.gz"
    link.symlink_to(reference)
    assert_refused_worst(_score(reference, link), RefusalCategory.NOT_REGULAR_FILE)


def test_a_directory_or_fifo_is_refused(reference: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.nii.gz").mkdir()
    os.mkfifo(tmp_path / "fifo.nii.gz")
    assert_refused_worst(_score(reference, tmp_path / "dir.nii.gz"), RefusalCategory.NOT_REGULAR_FILE)
    assert_refused_worst(_score(reference, tmp_path / "fifo.nii.gz"), RefusalCategory.NOT_REGULAR_FILE)


def test_labels_outside_a_set_with_holes_are_refused(tmp_path: Path) -> None:
    reference = write_label_map(tmp_path / "r.nii.gz", _labels())
    prediction = np.where(_labels() == 2, 3, _labels()).astype(np.uint8)
    organs = (OrganSpec(1, "liver"), OrganSpec(2, "spleen"), OrganSpec(5, "stomach"))
    case = score_files(reference, write_label_map(tmp_path / "p.nii.gz", prediction), organs)
    assert case.refusal is RefusalCategory.UNKNOWN_LABELS
    assert "3" in case.message and "0, 1, 2, 5" in case.message


def test_a_file_larger_than_the_limit_is_refused(reference: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "p.nii.gz", gz(nifti_bytes(_labels())) + bytes(0))
    case = _score(reference, path, max_decompressed_bytes=1000)
    assert case.refusal is RefusalCategory.TOO_LARGE


def test_a_stream_inflating_beyond_the_limit_is_refused(reference: Path, tmp_path: Path) -> None:
    # A correct image followed by a second gzip member of 20 MB of zeros (20 kB compressed).
    path = write(tmp_path / "p.nii.gz", gz(nifti_bytes(_labels())) + gzip.compress(bytes(20_000_000)))
    case = _score(reference, path, max_decompressed_bytes=5_000_000)
    assert case.refusal is RefusalCategory.TOO_LARGE


@pytest.mark.parametrize(
    "variant", [_bad_crc, lambda a: _cut(gz(nifti_bytes(a)), 2), lambda a: gz(nifti_bytes(a))[:-4]]
)
def test_corruption_is_caught_with_plain_zlib_too(monkeypatch: pytest.MonkeyPatch, variant) -> None:
    monkeypatch.setattr(nifti, "_new_inflater", nifti._ZlibInflater)
    with pytest.raises(LoadError) as error:
        nifti.read_nifti(variant(_labels()), max_decompressed_bytes=10**7)
    assert error.value.category is RefusalCategory.CORRUPT_GZIP
    good = nifti.read_nifti(_two_members(nifti_bytes(_labels())), max_decompressed_bytes=10**7)
    assert np.array_equal(good.array(), _labels())


def test_messages_tell_the_team_what_to_fix(reference: Path, tmp_path: Path) -> None:
    flipped = _score(
        reference,
        write(tmp_path / "a.nii.gz", gz(nifti_bytes(_labels(), affine=AFFINE @ np.diag([-1, 1, 1, 1])))),
    )
    shifted = _score(
        reference, write(tmp_path / "b.nii.gz", gz(nifti_bytes(_labels(), affine=AFFINE + _shift(0.5))))
    )
    spacing = _score(
        reference,
        write(tmp_path / "c.nii.gz", gz(nifti_bytes(_labels(), affine=AFFINE @ np.diag([1, 1, 2, 1])))),
    )
    shape = _score(reference, write(tmp_path / "d.nii.gz", gz(nifti_bytes(_labels()[:, :, :-1]))))
    assert "orientation" in flipped.message
    assert "origin is shifted" in shifted.message
    assert "voxel spacing is (0.8, 0.8, 3)" in spacing.message
    assert "(10, 12, 7)" in shape.message and "(10, 12, 8)" in shape.message


def test_load_prediction_and_reference_directly(reference: Path, tmp_path: Path) -> None:
    loaded = load_reference(reference)
    assert loaded.labels.dtype == np.uint8 and loaded.geometry.shape == SHAPE
    assert loaded.geometry.spacing_mm == pytest.approx(SPACING_MM)
    assert loaded.extents[0] == (slice(2, 6), slice(3, 8), slice(2, 5))
    prediction = load_prediction(
        write_label_map(tmp_path / "p.nii.gz", _labels().astype(np.int32)),
        read_geometry(reference),
        {1, 2, 3},
    )
    assert prediction.labels.dtype == np.uint8 and np.array_equal(prediction.labels, _labels())
    with pytest.raises(LoadError) as error:
        load_prediction(write_label_map(tmp_path / "q.nii.gz", _labels()), read_geometry(reference), {1})
    assert error.value.category is RefusalCategory.UNKNOWN_LABELS


def test_an_unusable_reference_raises_instead_of_blaming_the_team(tmp_path: Path) -> None:
    prediction = write_label_map(tmp_path / "p.nii.gz", _labels())
    with pytest.raises(LoadError, match="reference"):
        _score(tmp_path / "no_reference.nii.gz", prediction)
    no_affine = write_label_map(tmp_path / "r.nii.gz", _labels(), qform_code=0, sform_code=0)
    with pytest.raises(LoadError) as error:
        _score(no_affine, prediction)
    assert error.value.category is RefusalCategory.MISSING_AFFINE


def test_zlib_inflater_and_isal_agree() -> None:
    content = gz(nifti_bytes(_labels()))
    assert zlib.decompress(content, wbits=31) == nifti_bytes(_labels())
    assert np.array_equal(nifti.read_nifti(content, max_decompressed_bytes=10**7).array(), _labels())
