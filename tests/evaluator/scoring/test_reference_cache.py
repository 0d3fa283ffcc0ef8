"""The reference cache: scoring with a cache entry gives exactly the numbers of scoring the reference file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from scipy import ndimage

from evaluator.scoring import reference_cache
from evaluator.scoring.cases import CaseScore, NsdDefinition, OrganStatus, _score_organ, score_many
from evaluator.scoring.extents import label_extents
from evaluator.scoring.loading import Geometry, LabelMap, load_reference
from evaluator.scoring.organs import OrganSpec
from evaluator.scoring.reference import deepmind_scores
from evaluator.scoring.refusals import RefusalCategory
from tests.evaluator.nifti_files import SPACING_MM, write_label_map
from tests.evaluator.strategies import label_maps, predictions_of, spacings

ORGANS = (
    OrganSpec(1, "liver"),
    OrganSpec(2, "spleen", 2.0),
    OrganSpec(3, "pancreas", 0.75),
    OrganSpec(4, "kidney_left"),
    OrganSpec(5, "stomach"),
)
SHAPE = (40, 36, 30)


def _reference_labels() -> np.ndarray:
    """Four organs (label 4 absent), one of them touching the volume border."""
    grid = np.indices(SHAPE).astype(float)
    labels = np.zeros(SHAPE, np.uint8, order="F")
    for label, centre, radii in (
        (1, (16, 16, 14), (11, 10, 9)),
        (2, (31, 26, 12), (6, 5, 8)),
        (3, (24, 6, 18), (9, 3, 4)),
        (5, (36, 8, 28), (6, 6, 5)),  # cut by the volume's faces
    ):
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) < 1
        labels[inside & (labels == 0)] = label
    return labels


def _predictions() -> dict[str, np.ndarray]:
    reference = _reference_labels()
    rng = np.random.default_rng(5)
    shifted = np.roll(ndimage.grey_dilation(reference, size=(2, 1, 2)), (1, -1, 0), axis=(0, 1, 2))
    shifted[rng.random(SHAPE) < 0.003] = 4  # an organ absent from the reference, predicted
    missed = reference.copy()
    missed[missed == 3] = 0  # pancreas missed
    missed[missed == 2] = 0  # spleen missed
    missed[2:4, 30:33, 2:5] = 1  # a stray liver blob far from the liver
    return {
        "shifted": shifted,
        "missed": missed,
        "empty": np.zeros(SHAPE, np.uint8),
        "perfect": reference.copy(),
    }


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("cache_case")
    reference = write_label_map(folder / "reference.nii.gz", _reference_labels())
    predictions = {name: write_label_map(folder / f"{name}.nii.gz", array) for name, array in _predictions().items()}
    predictions["wrong_shape"] = write_label_map(folder / "wrong_shape.nii.gz", np.zeros((4, 4, 4), np.uint8))
    return reference, predictions


def _assert_identical(cached: CaseScore, uncached: CaseScore) -> None:
    """Every field equal; NaN equals NaN, and nothing else is tolerated."""
    assert (cached.refusal, cached.message) == (uncached.refusal, uncached.message)
    assert len(cached.organs) == len(uncached.organs)
    for ours, theirs in zip(cached.organs, uncached.organs, strict=True):
        _assert_same_organ(ours, theirs)


def _assert_same_organ(ours, theirs) -> None:
    for field in ours.__dataclass_fields__:
        a, b = getattr(ours, field), getattr(theirs, field)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (ours.name, field, a, b)


@settings(max_examples=150, deadline=None)
@given(data=label_maps(max_side=10, max_label=3).flatmap(lambda r: predictions_of(r, max_label=3).map(lambda p: (r, p))),
       spacing=spacings)
def test_cached_organs_score_exactly_as_the_label_map(data, spacing) -> None:
    reference, prediction = data
    reference_extents = label_extents(reference, 3)
    geometry = Geometry(shape=reference.shape, affine=np.eye(4), spacing_mm=spacing)
    cached = reference_cache.cached_organs(LabelMap(reference, geometry, reference_extents))
    prediction_extents = label_extents(prediction, 3)
    for organ in ORGANS[:3]:
        for definition in NsdDefinition:
            plain = _score_organ(
                reference, prediction, reference_extents, prediction_extents, spacing, organ, definition
            )
            from_cache = _score_organ(
                None, prediction, reference_extents, prediction_extents, spacing, organ, definition,
                cached.get(organ.label),
            )
            _assert_same_organ(from_cache, plain)


@pytest.mark.parametrize("nsd_definition", list(NsdDefinition))
def test_cached_scores_equal_uncached_scores_exactly(tmp_path, case_files, nsd_definition) -> None:
    reference, predictions = case_files
    entry = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    names = sorted(predictions)
    pairs = [(reference, predictions[name]) for name in names] + [(reference, None)]
    uncached = score_many(pairs, ORGANS, processes=2, nsd_definition=nsd_definition)
    cached = score_many(
        pairs, ORGANS, processes=2, nsd_definition=nsd_definition, reference_caches=[entry] * len(pairs)
    )
    for ours, theirs in zip(cached, uncached, strict=True):
        _assert_identical(ours, theirs)
    by_name = dict(zip([*names, "no output"], cached, strict=True))
    statuses = {name: [organ.status for organ in case.organs] for name, case in by_name.items()}
    # The cases cover every kind of organ result.
    assert statuses["missed"][1:3] == [OrganStatus.MISSED, OrganStatus.MISSED]
    assert statuses["empty"] == [OrganStatus.MISSED] * 3 + [OrganStatus.ABSENT, OrganStatus.MISSED]
    assert statuses["shifted"][3] is OrganStatus.ABSENT and by_name["shifted"].organs[3].predicted_volume_ml > 0
    assert by_name["wrong_shape"].refusal is RefusalCategory.WRONG_SHAPE
    assert by_name["no output"].refusal is RefusalCategory.MISSING_OUTPUT
    assert by_name["perfect"].organs[0].dsc == 1.0


def test_cached_scores_agree_with_deepmind(tmp_path, case_files) -> None:
    reference, predictions = case_files
    entry = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    [case] = score_many([(reference, predictions["shifted"])], ORGANS, processes=1, reference_caches=[entry])
    reference_labels, prediction_labels = _reference_labels(), _predictions()["shifted"]
    for organ, score in zip(ORGANS, case.organs, strict=True):
        if organ.label == 4:
            assert score.status is OrganStatus.ABSENT
            continue
        expected = deepmind_scores(
            reference_labels == organ.label, prediction_labels == organ.label, SPACING_MM, organ.nsd_tolerance_mm
        )
        assert abs(score.dsc - expected.dsc) <= 1e-9
        assert abs(score.nsd - expected.nsd) <= 1e-9
        assert score.hd95_mm == expected.hd95_mm or abs(score.hd95_mm - expected.hd95_mm) <= 1e-6
        assert score.assd_mm == expected.assd_mm or abs(score.assd_mm - expected.assd_mm) <= 1e-6


def test_an_entry_holds_the_reference_as_read_from_the_file(tmp_path, case_files) -> None:
    reference, _ = case_files
    cached = reference_cache.read(reference_cache.build(tmp_path, "abdomen", "case_001", reference), reference)
    loaded = load_reference(reference)
    rebuilt = cached.label_map()
    assert rebuilt.labels.dtype == loaded.labels.dtype and np.array_equal(rebuilt.labels, loaded.labels)
    assert rebuilt.extents == loaded.extents
    assert np.array_equal(cached.geometry.affine, loaded.geometry.affine)
    assert cached.geometry.spacing_mm == loaded.geometry.spacing_mm
    assert cached.geometry.spacing_mm == pytest.approx(SPACING_MM)
    assert {label: organ.voxels for label, organ in cached.organs.items()} == {
        label: int(np.count_nonzero(loaded.labels == label)) for label in (1, 2, 3, 5)
    }


def test_building_twice_reuses_the_entry(tmp_path, case_files) -> None:
    reference, _ = case_files
    first = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    stamp = (first / "meta.json").stat().st_mtime_ns
    assert reference_cache.build(tmp_path, "abdomen", "case_001", reference) == first
    assert (first / "meta.json").stat().st_mtime_ns == stamp
    assert reference_cache.lookup(tmp_path, "abdomen", "case_001", reference) == first


def test_a_changed_reference_is_never_scored_from_the_old_entry(tmp_path, case_files) -> None:
    reference, predictions = case_files
    copy = tmp_path / "reference.nii.gz"
    copy.write_bytes(reference.read_bytes())
    old_entry = reference_cache.build(tmp_path / "cache", "abdomen", "case_001", copy)
    changed = _reference_labels()
    changed[changed == 2] = 0  # the organizers fixed the reference: no spleen after all
    write_label_map(copy, changed)
    assert reference_cache.lookup(tmp_path / "cache", "abdomen", "case_001", copy) is None
    with pytest.raises(reference_cache.ReferenceCacheError, match="another reference"):
        reference_cache.read(old_entry, copy)
    # Handed the stale entry anyway, scoring reads the file: the spleen is absent now.
    [stale] = score_many([(copy, predictions["shifted"])], ORGANS, processes=1, reference_caches=[old_entry])
    [fresh] = score_many([(copy, predictions["shifted"])], ORGANS, processes=1)
    _assert_identical(stale, fresh)
    assert stale.organs[1].status is OrganStatus.ABSENT
    # Rebuilding makes a new entry and removes the stale one.
    new_entry = reference_cache.build(tmp_path / "cache", "abdomen", "case_001", copy)
    assert new_entry != old_entry and not old_entry.exists()
    assert reference_cache.lookup(tmp_path / "cache", "abdomen", "case_001", copy) == new_entry


def test_an_entry_of_another_evaluator_version_is_rebuilt(tmp_path, case_files, monkeypatch) -> None:
    reference, _ = case_files
    old_entry = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    monkeypatch.setattr(reference_cache, "EVALUATOR_VERSION", "9.9.9-1-0123456789ab")
    assert reference_cache.lookup(tmp_path, "abdomen", "case_001", reference) is None
    with pytest.raises(reference_cache.ReferenceCacheError, match="another evaluator version"):
        reference_cache.read(old_entry)
    new_entry = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    assert new_entry.name.endswith("--9.9.9-1-0123456789ab") and not old_entry.exists()
    assert reference_cache.read(new_entry, reference).organs[1].voxels > 0


def test_a_damaged_entry_falls_back_to_the_reference_file(tmp_path, case_files) -> None:
    reference, predictions = case_files
    entry = reference_cache.build(tmp_path, "abdomen", "case_001", reference)
    (entry / "organs.npz").write_bytes(b"not a zip file")
    with pytest.raises(reference_cache.ReferenceCacheError, match="damaged"):
        reference_cache.read(entry, reference)
    [cached] = score_many([(reference, predictions["shifted"])], ORGANS, processes=1, reference_caches=[entry])
    [uncached] = score_many([(reference, predictions["shifted"])], ORGANS, processes=1)
    _assert_identical(cached, uncached)
    assert reference_cache.build(tmp_path, "abdomen", "case_001", reference) == entry  # repaired in place
    reference_cache.read(entry, reference)


def test_names_from_the_manifest_cannot_leave_the_cache_folder(tmp_path) -> None:
    directory = reference_cache.entry_directory(tmp_path, "../abdomen", "../../etc/case 1", "ab" * 32)
    assert directory.parent.parent == tmp_path
    assert directory.parent.name == "_._abdomen"
    assert directory.name.startswith("_._.._etc_case_1--abababababababab--")
    assert reference_cache.entry_directory(tmp_path, "a", "b", "0" * 64) == tmp_path / "a" / (
        f"b--{'0' * 16}--{reference_cache.EVALUATOR_VERSION}"
    )


def test_a_reference_is_hashed_once_while_unchanged_and_again_once_it_changes(tmp_path):
    import hashlib
    import os

    path = tmp_path / "reference.nii.gz"
    path.write_bytes(b"first")
    reference_cache._sha256_of.cache_clear()
    assert reference_cache.file_sha256(path) == reference_cache.file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    assert reference_cache._sha256_of.cache_info().misses == 1  # the lookup and the check read it once
    path.write_bytes(b"second, longer")
    os.utime(path, ns=(1, 10**18))
    assert reference_cache.file_sha256(path) == hashlib.sha256(b"second, longer").hexdigest()
