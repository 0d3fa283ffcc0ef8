"""Benchmark of the evaluator on one realistic case, against only reading the files and against DeepMind.

    .venv/bin/python bench/bench_evaluator.py [--keep DIR] [--repeat N]

Generates a 512x512x300 abdominal label map (spacing 0.8x0.8x1.5 mm, 9 organs at realistic volumes)
and a perturbed prediction of it (shifted, dilated, eroded, noisy organs, stray blobs, part of an organ
missed), writes both as .nii.gz, then measures, each in a fresh interpreter so that peak memory is
its own:

* read only: nibabel loads both files into arrays (what any scorer must at least do);
* ours, whole case: `score_files` (safe reading with CRC check and validation, all 9 organs scored);
* ours, scoring: `score_case` on the decoded arrays (DSC, NSD, HD95, ASSD, volumes for 9 organs);
* DeepMind: `surface-distance` on the same arrays (DSC, surface distances, NSD at 1.5 mm, HD95, ASSD).

Times (wall-clock, and CPU including child processes) are the best of `--repeat` runs (DeepMind:
one run); memory is the peak resident set of the measuring process while it measures, or for
`score_files` (which forks) the peak of the summed PSS of the process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from evaluator.scoring.organs import OrganSpec

T = TypeVar("T")

SHAPE = (512, 512, 300)
SPACING_MM = (0.8, 0.8, 1.5)
# Same names as evaluator.scoring.organs.TOUCHSTONE_ORGANS; spelled out so the parent process never imports the evaluator.
ORGAN_NAMES = ("aorta", "gall_bladder", "kidney_left", "kidney_right", "liver", "pancreas", "postcava", "spleen", "stomach")
TOLERANCE_MM = 1.5
# label: (centre as a fraction of the field of view, semi-axes in mm) of ellipsoid lobes
_LOBES = {
    5: [((0.33, 0.42, 0.58), (80, 70, 55)), ((0.45, 0.40, 0.62), (55, 50, 40))],  # liver
    8: [((0.74, 0.60, 0.60), (30, 55, 30))],  # spleen
    3: [((0.68, 0.66, 0.42), (28, 30, 50))],  # kidney_left
    4: [((0.31, 0.66, 0.40), (28, 30, 50))],  # kidney_right
    9: [((0.62, 0.36, 0.62), (50, 35, 38)), ((0.57, 0.33, 0.52), (30, 25, 25))],  # stomach
    6: [((0.52, 0.52, 0.48), (55, 13, 18)), ((0.61, 0.54, 0.50), (22, 13, 15))],  # pancreas
    2: [((0.38, 0.30, 0.48), (18, 18, 27))],  # gall_bladder
}
_TUBES = {1: (0.53, 0.66, 10.0), 7: (0.44, 0.63, 10.0)}  # aorta, postcava: x, y fraction; radius mm


def make_reference(seed: int = 0) -> np.ndarray:
    """A Fortran-ordered uint8 label map with 9 organs of realistic size and irregular surfaces."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8, order="F")
    spacing = np.array(SPACING_MM)
    field_mm = np.array(SHAPE) * spacing
    for label, lobes in _LOBES.items():
        for centre_fraction, semi_axes in lobes:
            centre, axes = np.array(centre_fraction) * field_mm, np.array(semi_axes, float)
            low = np.maximum(((centre - axes * 1.3) / spacing).astype(int), 0)
            high = np.minimum(((centre + axes * 1.3) / spacing).astype(int) + 1, SHAPE)
            grids = np.ogrid[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
            implicit = sum(
                ((g * s - c) / a) ** 2 for g, s, c, a in zip(grids, spacing, centre, axes, strict=True)
            )
            box = labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
            inside = implicit < 1 + 0.25 * _smooth_noise(rng, implicit.shape)
            box[inside & (box == 0)] = label
    z_mm = np.arange(SHAPE[2]) * spacing[2]
    x_mm = np.arange(SHAPE[0])[:, None] * spacing[0]
    y_mm = np.arange(SHAPE[1])[None, :] * spacing[1]
    for label, (x_fraction, y_fraction, radius) in _TUBES.items():
        for z in range(10, SHAPE[2] - 10):
            x0 = x_fraction * field_mm[0] + 6 * np.sin(z_mm[z] / 60)
            y0 = y_fraction * field_mm[1] + 4 * np.cos(z_mm[z] / 80)
            disc = (x_mm - x0) ** 2 + (y_mm - y0) ** 2 < radius**2
            plane = labels[:, :, z]
            plane[disc & (plane == 0)] = label
    return labels


def make_prediction(reference: np.ndarray, seed: int = 1, stray_blobs: int = 12) -> np.ndarray:
    """A plausible network output: each organ shifted, dilated or eroded, with a noisy boundary."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    prediction = np.zeros_like(reference)
    for label, box in enumerate(ndimage.find_objects(reference), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 8, 0), min(s.stop + 8, n)) for s, n in zip(box, SHAPE, strict=True))
        organ = reference[box] == label
        distance_in = ndimage.distance_transform_edt(organ, sampling=SPACING_MM)
        distance_out = ndimage.distance_transform_edt(~organ, sampling=SPACING_MM)
        signed = distance_out - distance_in  # < 0 inside
        offset_mm = rng.uniform(-1.2, 1.2) + 1.5 * _smooth_noise(rng, organ.shape)
        mask = signed < offset_mm
        mask = np.roll(mask, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
        if label == 6:  # miss the pancreas tail
            mask[: mask.shape[0] // 3] = False
        target = prediction[box]
        target[mask & (target == 0)] = label
    for _ in range(stray_blobs):  # false positives, some near organs, some far
        label = int(rng.integers(1, 10))
        centre = rng.integers(20, np.array(SHAPE) - 20)
        radius = rng.integers(2, 6, 3)
        prediction[tuple(slice(c - r, c + r) for c, r in zip(centre, radius, strict=True))] = label
    return prediction


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    from scipy import ndimage

    coarse = rng.normal(size=(7, 7, 7))
    smooth = ndimage.zoom(coarse, [n / 7 for n in shape], order=1)
    return smooth[: shape[0], : shape[1], : shape[2]]


def write_case(directory: Path, stray_blobs: int) -> tuple[Path, Path]:
    import nibabel as nib

    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = (-200.0, -200.0, -220.0)
    reference = make_reference()
    prediction = make_prediction(reference, stray_blobs=stray_blobs)
    paths = []
    for name, labels in (("reference", reference), ("prediction", prediction)):
        image = nib.Nifti1Image(labels, affine)
        image.set_qform(affine, 1)
        image.set_sform(affine, 1)
        path = directory / f"{name}.nii.gz"
        nib.save(image, path)
        paths.append(path)
    return paths[0], paths[1]


# ---- measurements, each run in its own interpreter -------------------------------------------------


def _organs() -> tuple[OrganSpec, ...]:
    from evaluator.scoring.organs import OrganSpec

    return tuple(OrganSpec(label, name, TOLERANCE_MM) for label, name in enumerate(ORGAN_NAMES, start=1))


def _read_arrays(
    reference: Path, prediction: Path
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    import nibabel as nib

    images: list[nib.Nifti1Image] = [nib.load(path) for path in (reference, prediction)]  # type: ignore[misc]
    zooms = images[0].header.get_zooms()
    spacing = (float(zooms[0]), float(zooms[1]), float(zooms[2]))
    return np.asanyarray(images[0].dataobj), np.asanyarray(images[1].dataobj), spacing


def _timed(repeat: int, work: Callable[[], T]) -> tuple[dict[str, float], T]:
    """Run `work()` `repeat` times; the best wall-clock and CPU seconds (children included), last result."""
    wall, cpu = [], []
    result = None
    for _ in range(repeat):
        result = None  # drop the previous result before the next run
        started, cpu_started = time.perf_counter(), _cpu_with_children()
        result = work()
        wall.append(time.perf_counter() - started)
        cpu.append(_cpu_with_children() - cpu_started)
    return {"seconds": min(wall), "cpu_seconds": min(cpu)}, result  # type: ignore[return-value]


def measure_read(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    timing, arrays = _timed(repeat, lambda: _read_arrays(reference, prediction))
    return {**timing, "peak_bytes": _peak_rss(), "decoded_bytes": arrays[0].nbytes + arrays[1].nbytes}


def measure_ours_whole(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator import score_files

    organs = _organs()
    timing, case = _timed(repeat, lambda: score_files(reference, prediction, organs))
    assert case.refusal is None, case.message
    with _PssSampler() as sampler:  # a separate run: sampling costs a little CPU
        score_files(reference, prediction, organs)
    return {**timing, "peak_bytes": sampler.peak_bytes}


def measure_ours_scoring(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator import score_case

    reference_labels, predicted_labels, spacing = _read_arrays(reference, prediction)
    organs = _organs()
    baseline = _reset_peak()
    timing, scores = _timed(repeat, lambda: score_case(reference_labels, predicted_labels, spacing, organs))
    values = [[s.dsc, s.nsd, s.hd95_mm, s.assd_mm] for s in scores]
    return {**timing, "peak_bytes": _peak_rss(), "baseline_bytes": baseline, "values": values}


def measure_deepmind(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator.scoring.reference import deepmind_scores

    reference_labels, predicted_labels, spacing = _read_arrays(reference, prediction)
    baseline = _reset_peak()

    def score_all() -> list[list[float]]:
        values = []
        for label in range(1, len(ORGAN_NAMES) + 1):
            result = deepmind_scores(
                reference_labels == label, predicted_labels == label, spacing, TOLERANCE_MM
            )
            values.append([result.dsc, result.nsd, result.hd95_mm, result.assd_mm])
        return values

    timing, values = _timed(repeat, score_all)
    return {**timing, "peak_bytes": _peak_rss(), "baseline_bytes": baseline, "values": values}


MEASUREMENTS = {
    "read": measure_read,
    "ours_whole": measure_ours_whole,
    "ours_scoring": measure_ours_scoring,
    "deepmind": measure_deepmind,
}


def _peak_rss() -> int:
    """Peak resident set size (VmHWM) of this process since it started or since `_reset_peak`.

    Not `ru_maxrss`, which also keeps the peak of exited threads and so survives the reset.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS (Linux >= 4.0, /proc/self/clear_refs) and return it.

    So that the peak measured afterwards is that of the scoring, not of nibabel's reading before it.
    """
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_with_children() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _PssSampler:
    """Samples the summed proportional set size (PSS) of this process and its descendants every 5 ms."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, sum(_pss(pid) for pid in _tree(os.getpid())))
            time.sleep(0.005)


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for index in range(len(pids) + 64):
        if index >= len(pids):
            break
        try:
            for task in os.listdir(f"/proc/{pids[index]}/task"):
                with open(f"/proc/{pids[index]}/task/{task}/children") as children:
                    pids.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return pids


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---- driver -----------------------------------------------------------------------------------------


def _run_measurement(name: str, reference: Path, prediction: Path, repeat: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--measure",
        name,
        str(reference),
        str(prediction),
        "--repeat",
        str(repeat),
    ]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _mb(count: float) -> str:
    return f"{count / 1e6:8.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; the best counts (default 3)"
    )
    parser.add_argument("--keep", type=Path, help="write the case into this folder and keep it")
    parser.add_argument(
        "--stray-blobs", type=int, default=12, help="false-positive blobs in the prediction (default 12)"
    )
    arguments = parser.parse_args()
    if arguments.measure:
        reference_path, prediction_path = arguments.files
        print(json.dumps(MEASUREMENTS[arguments.measure](reference_path, prediction_path, arguments.repeat)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        directory = arguments.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        reference, prediction = write_case(directory, arguments.stray_blobs)
        print(
            f"case: {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} uint8, spacing {SPACING_MM} mm, 9 organs, "
            f"{arguments.stray_blobs} stray blobs in the prediction; generated in "
            f"{time.perf_counter() - started:.0f} s; files {reference.stat().st_size / 1e6:.1f} + "
            f"{prediction.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs\n"
        )
        results = {
            name: _run_measurement(name, reference, prediction, arguments.repeat if name != "deepmind" else 1)
            for name in ("read", "ours_whole", "ours_scoring", "deepmind")
        }
    read, whole, scoring, deep = (
        results[name] for name in ("read", "ours_whole", "ours_scoring", "deepmind")
    )
    decoded = read["decoded_bytes"]
    rows = [
        ("read only (nibabel, both files)", read, "peak RSS of the process"),
        ("ours, whole case (score_files)", whole, "peak summed PSS, all processes"),
        ("ours, scoring 9 organs (score_case)", scoring, "peak RSS while scoring"),
        ("DeepMind, scoring 9 organs", deep, "peak RSS while scoring"),
    ]
    print(f"{'measurement':<38}{'wall s':>9}{'CPU s':>9}{'peak memory':>14}  memory measured as")
    for label, result, how in rows:
        seconds, cpu_seconds, peak = result["seconds"], result["cpu_seconds"], result["peak_bytes"]
        print(f"{label:<38}{seconds:9.3f}{cpu_seconds:9.3f}{_mb(peak):>14}  {how}")
    difference = np.nanmax(np.abs(np.array(scoring["values"], float) - np.array(deep["values"], float)))
    print(f"\nlargest difference from DeepMind over DSC, NSD, HD95, ASSD of the 9 organs: {difference:.3g}")
    print(
        f"decoded volumes: {_mb(decoded).strip()}; before scoring (interpreter, libraries, the two arrays): "
        f"{_mb(scoring['baseline_bytes']).strip()} (ours), {_mb(deep['baseline_bytes']).strip()} (DeepMind)\n"
    )
    limit = decoded + 300e6
    print("targets (ratios of wall-clock time; of CPU time in brackets)")
    speedup, cpu_speedup = deep["seconds"] / scoring["seconds"], deep["cpu_seconds"] / scoring["cpu_seconds"]
    verdict = "met" if speedup >= 10 else "NOT met"
    print(
        f"  our scoring >= 10x faster than DeepMind's:      {speedup:6.1f}x ({cpu_speedup:5.1f}x)  {verdict}"
    )
    ratio, cpu_ratio = whole["seconds"] / read["seconds"], whole["cpu_seconds"] / read["cpu_seconds"]
    verdict = "met" if ratio <= 3 else "NOT met"
    print(f"  our whole case <= 3x the read-only time:        {ratio:6.2f}x ({cpu_ratio:5.2f}x)  {verdict}")
    for label, peak in (("our scoring", scoring["peak_bytes"]), ("our whole case", whole["peak_bytes"])):
        verdict = "met" if peak <= limit else "NOT met"
        print(
            f"  peak memory of {label:<15} <= decoded + 300 MB ({_mb(limit).strip()}): {_mb(peak).strip():>7}  {verdict}"
        )
    print(
        f"  (DeepMind's scoring peaks at {_mb(deep['peak_bytes']).strip()}, "
        f"nibabel's reading at {_mb(read['peak_bytes']).strip()})"
    )


if __name__ == "__main__":
    main()
