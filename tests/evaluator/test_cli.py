"""`python -m evaluator score`: the organizers' command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluator.__main__ import main
from tests.evaluator.nifti_files import write, write_label_map


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    labels = np.zeros((8, 8, 6), np.uint8)
    labels[2:6, 2:6, 1:4] = 5
    shifted = np.roll(labels, 2, axis=0)
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(
        json.dumps({"0": "background", "5": "liver", "8": {"name": "spleen", "nsd_tolerance_mm": 2.0}})
    )
    return {
        "reference": write_label_map(tmp_path / "reference.nii.gz", labels),
        "prediction": write_label_map(tmp_path / "prediction.nii.gz", shifted),
        "broken": write(tmp_path / "broken.nii.gz", b"not a nifti at all" * 30),
        "labels": labels_json,
    }


def test_score_prints_a_table(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["score", str(files["reference"]), str(files["prediction"]), "--labels", str(files["labels"])]
    )
    output = capsys.readouterr().out
    assert status == 0
    assert "liver" in output and "scored" in output
    assert "spleen" in output and "absent" in output


def test_score_prints_json(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "score",
            str(files["reference"]),
            str(files["prediction"]),
            "--labels",
            str(files["labels"]),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["refusal"] is None and result["nsd_definition"] == "surfel"
    liver, spleen = result["organs"]
    assert liver["name"] == "liver" and 0 < liver["dsc"] < 1
    assert spleen["status"] == "absent" and spleen["dsc"] is None


def test_a_refused_prediction_exits_1_with_the_reason(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["score", str(files["reference"]), str(files["broken"]), "--labels", str(files["labels"]), "--json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert status == 1
    assert result["refusal"] == "not_nifti" and result["message"]
    assert result["organs"][0]["status"] == "refused" and result["organs"][0]["hd95_mm"] == "inf"


def test_voxel_nsd_definition_can_be_chosen(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "score",
        str(files["reference"]),
        str(files["prediction"]),
        "--labels",
        str(files["labels"]),
        "--json",
    ]
    main(args)
    surfel = json.loads(capsys.readouterr().out)["organs"][0]["nsd"]
    main([*args, "--nsd-definition", "voxel"])
    voxel = json.loads(capsys.readouterr().out)
    assert voxel["nsd_definition"] == "voxel" and voxel["organs"][0]["nsd"] != surfel


def test_unusable_inputs_exit_3(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_labels = write(tmp_path / "bad.json", b'{"one": "liver"}')
    assert (
        main(["score", str(files["reference"]), str(files["prediction"]), "--labels", str(bad_labels)]) == 3
    )
    missing = str(tmp_path / "missing.nii.gz")
    assert main(["score", missing, str(files["prediction"]), "--labels", str(files["labels"])]) == 3
    assert "cannot use reference" in capsys.readouterr().err


def test_python_dash_m_evaluator_runs(files: dict[str, Path]) -> None:
    command = [
        sys.executable,
        "-m",
        "evaluator",
        "score",
        str(files["reference"]),
        str(files["prediction"]),
        "--labels",
        str(files["labels"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "liver" in result.stdout
