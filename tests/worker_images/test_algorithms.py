"""The example team algorithms follow the container contract: the baseline segments every site decently; the
fragile one writes valid outputs until it crashes on the hospital whose slices are stored head to feet.

They run on the host with the test interpreter (TOUCHSTONE_INPUT/OUTPUT point at a folder laid out like
/input); one integration test builds the baseline image and runs it in the gVisor sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from evaluator.synthetic.benchmark import ORGANS, generate_benchmark

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ROOT / "worker_images" / "algorithms"


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two test-size cases from each of the four default sites, with ground truth."""
    folder = tmp_path_factory.mktemp("benchmark")
    return folder, generate_benchmark(folder, cases_per_site=2, size="test", seed=21)


def algorithm_input(folder: Path, benchmark_dir: Path, cases: list[dict]) -> Path:
    """A folder laid out like the contract's /input: cases.json, labels.json, images/ (no ground truth)."""
    (folder / "images").mkdir(parents=True)
    for case in cases:
        shutil.copy(benchmark_dir / case["image"], folder / case["image"])
    listing = {"cases": [{"case_id": case["case_id"], "image": case["image"]} for case in cases]}
    (folder / "cases.json").write_text(json.dumps(listing))
    shutil.copy(benchmark_dir / "labels.json", folder / "labels.json")
    return folder


def run_algorithm(name: str, input_dir: Path, output_dir: Path) -> subprocess.CompletedProcess:
    output_dir.mkdir(exist_ok=True)
    environment = {**os.environ, "TOUCHSTONE_INPUT": str(input_dir), "TOUCHSTONE_OUTPUT": str(output_dir)}
    return subprocess.run(
        [sys.executable, str(ALGORITHMS / name / "segment.py")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def dice_per_organ(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """DSC per organ present in the reference (absent organs are left out, as the scorer makes them NaN)."""
    scores = {}
    for label, name in ORGANS.items():
        truth, guess = reference == label, prediction == label
        if truth.any():
            scores[name] = (
                2.0 * np.count_nonzero(truth & guess) / (np.count_nonzero(truth) + np.count_nonzero(guess))
            )
    return scores


def check_output(output_dir: Path, benchmark_dir: Path, case: dict) -> np.ndarray:
    """The contract: an integer label map with the image's shape and affine and benchmark label ids."""
    written = nib.load(output_dir / f"{case['case_id']}.nii.gz")
    image = nib.load(benchmark_dir / case["image"])
    assert written.shape == image.shape
    assert np.allclose(written.affine, image.affine)
    assert written.get_data_dtype() == np.uint8
    labels = np.asanyarray(written.dataobj)
    assert set(np.unique(labels)) <= {0, *ORGANS}
    return labels


@pytest.fixture(scope="module")
def baseline_run(benchmark, tmp_path_factory):
    folder, cases = benchmark
    work = tmp_path_factory.mktemp("baseline")
    result = run_algorithm("baseline", algorithm_input(work / "input", folder, cases), work / "output")
    return result, work / "output"


def test_baseline_writes_one_label_map_per_case_on_the_image_grid(benchmark, baseline_run):
    folder, cases = benchmark
    result, output_dir = baseline_run
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in output_dir.iterdir()) == sorted(f"{c['case_id']}.nii.gz" for c in cases)
    for case in cases:
        check_output(output_dir, folder, case)


def test_baseline_prints_one_progress_line_per_case(benchmark, baseline_run):
    _, cases = benchmark
    result, _ = baseline_run
    for number, case in enumerate(cases, 1):
        assert f"[{number}/{len(cases)}] {case['case_id']}" in result.stdout


def test_baseline_segments_every_site_decently_but_not_perfectly(benchmark, baseline_run):
    folder, cases = benchmark
    _, output_dir = baseline_run
    per_site: dict[str, list[float]] = {}
    per_organ: dict[str, list[float]] = {}
    for case in cases:
        reference = np.asanyarray(nib.load(folder / case["label"]).dataobj)
        scores = dice_per_organ(check_output(output_dir, folder, case), reference)
        per_site.setdefault(case["site"], []).append(float(np.mean(list(scores.values()))))
        for organ, score in scores.items():
            per_organ.setdefault(organ, []).append(score)
    for site, means in per_site.items():
        assert 0.4 <= np.mean(means) <= 0.95, f"{site}: mean DSC {np.mean(means):.2f}"
    organ_means = {organ: float(np.mean(values)) for organ, values in per_organ.items()}
    assert 0.5 <= np.mean(list(organ_means.values())) <= 0.9, organ_means
    for organ in ("liver", "kidney_left", "kidney_right", "aorta"):
        assert organ_means[organ] >= 0.7, organ_means  # the easy organs are found everywhere


def test_baseline_uses_the_ids_of_labels_json(benchmark, tmp_path):
    """Label ids come from labels.json, not from a table baked into the algorithm."""
    folder, cases = benchmark
    input_dir = algorithm_input(tmp_path / "input", folder, cases[:1])
    (input_dir / "labels.json").write_text(json.dumps({"7": "liver", "2": "spleen"}))
    result = run_algorithm("baseline", input_dir, tmp_path / "output")
    assert result.returncode == 0, result.stderr
    labels = np.asanyarray(nib.load(tmp_path / "output" / f"{cases[0]['case_id']}.nii.gz").dataobj)
    reference = np.asanyarray(nib.load(folder / cases[0]["label"]).dataobj)
    assert set(np.unique(labels)) == {0, 2, 7}
    assert dice_per_organ(np.where(labels == 7, 5, 0), reference)["liver"] > 0.7


def test_fragile_crashes_on_head_to_feet_slices_after_writing_the_cases_before(benchmark, tmp_path):
    folder, cases = benchmark
    by_site = {case["site"]: case for case in cases}
    order = [by_site["NGH"], by_site["RVM"], by_site["HRH"], by_site["LKC"]]
    result = run_algorithm("fragile", algorithm_input(tmp_path / "input", folder, order), tmp_path / "output")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "hrh_" in result.stderr and "head to feet" in result.stderr
    written = sorted(p.name for p in (tmp_path / "output").iterdir())
    assert written == sorted(f"{case['case_id']}.nii.gz" for case in order[:2])
    for case in order[:2]:
        labels = check_output(tmp_path / "output", folder, case)
        assert not (labels == 6).any()  # no pancreas: its team never trained one
        reference = np.asanyarray(nib.load(folder / case["label"]).dataobj)
        assert dice_per_organ(labels, reference)["liver"] > 0.7


@pytest.mark.integration
def test_baseline_image_runs_in_the_sandbox(benchmark, tmp_path):
    """Built offline FROM the base image; run as uid 1000, no network, read-only root and input."""
    from tests.conftest import unavailable

    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode != 0
    ):
        unavailable("no Docker engine: `docker info` fails. Run `make services`.")
    if (
        subprocess.run(
            ["docker", "image", "inspect", "touchstone/base:latest"], capture_output=True
        ).returncode
        != 0
    ):
        unavailable("the offline base image touchstone/base is not built. Run `make images`.")
    tag = "touchstone-algo/baseline:test"
    build = subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            tag,
            "--build-arg",
            "BASE_IMAGE=touchstone/base:latest",
            "-f",
            str(ALGORITHMS / "baseline" / "Dockerfile"),
            str(ALGORITHMS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    folder, cases = benchmark
    chosen = [next(case for case in cases if case["site"] == site) for site in ("NGH", "HRH")]
    input_dir = algorithm_input(tmp_path / "input", folder, chosen)
    for path in [input_dir, *input_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    output_dir.chmod(0o777)  # written by uid 1000 inside the container
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--runtime=runsc",
            "--network=none",
            "--read-only",
            "--user",
            "1000",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{input_dir}:/input:ro",
            "-v",
            f"{output_dir}:/output",
            tag,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert f"[2/2] {chosen[1]['case_id']}" in run.stdout
    for case in chosen:
        labels = check_output(output_dir, folder, case)
        reference = np.asanyarray(nib.load(folder / case["label"]).dataobj)
        assert dice_per_organ(labels, reference)["liver"] > 0.7
