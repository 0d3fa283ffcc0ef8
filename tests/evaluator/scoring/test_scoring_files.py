"""score_files and score_many: whole cases from files, each in its own process, crashes contained."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

import evaluator.scoring.cases as scoring
from evaluator.scoring.cases import CaseScore, OrganStatus, score_files, score_many
from evaluator.scoring.organs import OrganSpec
from evaluator.scoring.refusals import LoadError, RefusalCategory
from tests.evaluator.nifti_files import gz, nifti_bytes, write, write_label_map

ORGANS = (OrganSpec(1, "liver"), OrganSpec(2, "spleen"))


def _labels(shift: int = 0) -> np.ndarray:
    labels = np.zeros((9, 8, 7), np.uint8)
    labels[2:6, 2:6, 1:5] = 1
    labels[7, 1:3, 2:4] = 2
    return np.roll(labels, shift, axis=1)


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_label_map(tmp_path / "reference.nii.gz", _labels())


def _assert_worst(case: CaseScore, category: RefusalCategory) -> None:
    assert case.refusal is category, case.message
    for organ in case.organs:
        assert organ.status is OrganStatus.REFUSED
        assert (organ.dsc, organ.nsd, organ.hd95_mm, organ.assd_mm) == (0.0, 0.0, math.inf, math.inf)


def test_a_reader_that_hangs_is_a_read_timeout(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "load_prediction", lambda *args, **kwargs: time.sleep(60))
    case = score_files(
        reference, write_label_map(tmp_path / "p.nii.gz", _labels()), ORGANS, read_timeout_s=0.5
    )
    _assert_worst(case, RefusalCategory.READ_TIMEOUT)


def test_a_reader_that_segfaults_takes_down_only_its_case(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    monkeypatch.setattr(
        scoring, "load_prediction", lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGSEGV)
    )
    case = score_files(reference, write_label_map(tmp_path / "p.nii.gz", _labels()), ORGANS)
    _assert_worst(case, RefusalCategory.READER_CRASHED)
    assert "signal" in case.message


def test_a_reader_over_its_memory_limit_is_refused(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "load_prediction", lambda *args, **kwargs: np.ones(3 * 1024**3, np.uint8))
    case = score_files(
        reference, write_label_map(tmp_path / "p.nii.gz", _labels()), ORGANS, read_memory_bytes=256 * 1024**2
    )
    _assert_worst(case, RefusalCategory.READER_CRASHED)
    assert "memory" in case.message


def test_a_crash_while_scoring_is_scoring_failed(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "_score_organ", lambda *args: os.abort())
    case = score_files(reference, write_label_map(tmp_path / "p.nii.gz", _labels()), ORGANS)
    _assert_worst(case, RefusalCategory.SCORING_FAILED)


def test_many_cases_keep_their_order_and_a_crash_stays_in_its_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = write_label_map(tmp_path / "reference.nii.gz", _labels())
    good = [write_label_map(tmp_path / f"good{shift}.nii.gz", _labels(shift)) for shift in range(3)]
    corrupt = write(tmp_path / "corrupt.nii.gz", gz(nifti_bytes(_labels()))[:60])
    crashing = write_label_map(tmp_path / "crash.nii.gz", _labels())
    original = scoring.load_prediction

    def load_prediction(path: Path, *args: object, **kwargs: object) -> object:
        if path.name == "crash.nii.gz":
            os.abort()
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "load_prediction", load_prediction)
    pairs = [
        (reference, good[0]),
        (reference, None),
        (reference, crashing),
        (reference, corrupt),
        (reference, good[1]),
        (reference, good[2]),
    ]
    cases = score_many(pairs, ORGANS, processes=2)
    assert [case.refusal for case in cases] == [
        None,
        RefusalCategory.MISSING_OUTPUT,
        RefusalCategory.READER_CRASHED,
        RefusalCategory.CORRUPT_GZIP,
        None,
        None,
    ]
    assert [case.organs[0].dsc for case in (cases[0], cases[4], cases[5])] == [
        score_files(reference, path, ORGANS).organs[0].dsc for path in good
    ]
    assert cases[0].organs[0].dsc == 1.0 and cases[4].organs[0].dsc < 1.0


def test_a_crash_while_reading_the_reference_is_the_platforms_problem(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "load_reference", lambda *args, **kwargs: os.abort())
    with pytest.raises(LoadError, match="reading the reference"):
        score_files(reference, write_label_map(tmp_path / "p.nii.gz", _labels()), ORGANS)


def test_score_many_raises_when_a_reference_is_unusable(tmp_path: Path) -> None:
    prediction = write_label_map(tmp_path / "p.nii.gz", _labels())
    with pytest.raises(LoadError, match="reference"):
        score_many([(tmp_path / "missing_reference.nii.gz", prediction)], ORGANS, processes=1)


def test_allowed_labels_can_be_wider_than_the_scored_organs(reference: Path, tmp_path: Path) -> None:
    with_kidney = _labels().copy()
    with_kidney[0, 0, 0] = 3
    path = write_label_map(tmp_path / "p.nii.gz", with_kidney)
    assert score_files(reference, path, ORGANS).refusal is RefusalCategory.UNKNOWN_LABELS
    assert score_files(reference, path, ORGANS, allowed_labels={1, 2, 3}).refusal is None
