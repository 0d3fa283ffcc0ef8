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

Times are the best of `--repeat` runs (DeepMind: one run); memory is the peak resident set of the
measuring process, or for `score_files` (which forks) the peak of the summed PSS of the process tree.
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
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 300)
SPACING_MM = (0.8, 0.8, 1.5)
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
            implicit = sum(((g * s - c) / a) ** 2 for g, s, c, a in zip(grids, spacing, centre, axes, strict=True))
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


def make_prediction(reference: np.ndarray, seed: int = 1) -> np.ndarray:
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
    for _ in range(12):  # stray blobs, some near organs, some far
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


def write_case(directory: Path) -> tuple[Path, Path]:
    import nibabel as nib

    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = (-200.0, -200.0, -220.0)
    reference = make_reference()
    prediction = make_prediction(reference)
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


def _organs():  # noqa: ANN202
    from evaluator.organs import OrganSpec

    return tuple(OrganSpec(label, name, TOLERANCE_MM) for label, name in enumerate(ORGAN_NAMES, start=1))


def _read_arrays(reference: Path, prediction: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    import nibabel as nib

    images = [nib.load(path) for path in (reference, prediction)]
    spacing = tuple(float(s) for s in images[0].header.get_zooms()[:3])
    return np.asanyarray(images[0].dataobj), np.asanyarray(images[1].dataobj), spacing  # type: ignore[return-value]


def measure_read(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        arrays = _read_arrays(reference, prediction)
        times.append(time.perf_counter() - started)
        decoded = arrays[0].nbytes + arrays[1].nbytes
        del arrays
    return {"seconds": min(times), "peak_bytes": _peak_rss(), "decoded_bytes": decoded}


def measure_ours_whole(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator import score_files

    organs = _organs()
    times, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), _cpu_with_children()
        case = score_files(reference, prediction, organs)
        times.append(time.perf_counter() - started)
        cpu.append(_cpu_with_children() - cpu_started)
    with _PssSampler() as sampler:
        score_files(reference, prediction, organs)
    assert case.refusal is None, case.message
    return {"seconds": min(times), "cpu_seconds": min(cpu), "peak_bytes": sampler.peak_bytes}


def measure_ours_scoring(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator import score_case

    reference_labels, predicted_labels, spacing = _read_arrays(reference, prediction)
    organs = _organs()
    baseline = _current_rss()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        scores = score_case(reference_labels, predicted_labels, spacing, organs)
        times.append(time.perf_counter() - started)
    values = [[s.dsc, s.nsd, s.hd95_mm, s.assd_mm] for s in scores]
    return {"seconds": min(times), "peak_bytes": _peak_rss(), "baseline_bytes": baseline, "values": values}


def measure_deepmind(reference: Path, prediction: Path, repeat: int) -> dict[str, object]:
    from evaluator.reference import deepmind_scores

    reference_labels, predicted_labels, spacing = _read_arrays(reference, prediction)
    baseline = _current_rss()
    started = time.perf_counter()
    values = []
    for label in range(1, len(ORGAN_NAMES) + 1):
        result = deepmind_scores(reference_labels == label, predicted_labels == label, spacing, TOLERANCE_MM)
        values.append([result.dsc, result.nsd, result.hd95_mm, result.assd_mm])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_bytes": _peak_rss(), "baseline_bytes": baseline, "values": values}


MEASUREMENTS = {
    "read": measure_read,
    "ours_whole": measure_ours_whole,
    "ours_scoring": measure_ours_scoring,
    "deepmind": measure_deepmind,
}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
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
    command = [sys.executable, __file__, "--measure", name, str(reference), str(prediction), "--repeat", str(repeat)]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _mb(count: float) -> str:
    return f"{count / 1e6:8.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts (default 3)")
    parser.add_argument("--keep", type=Path, help="write the case into this folder and keep it")
    arguments = parser.parse_args()
    if arguments.measure:
        print(json.dumps(MEASUREMENTS[arguments.measure](*arguments.files, arguments.repeat)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        directory = arguments.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        reference, prediction = write_case(directory)
        print(f"case: {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} uint8, spacing {SPACING_MM} mm, 9 organs; generated in "
              f"{time.perf_counter() - started:.0f} s; files {reference.stat().st_size / 1e6:.1f} + "
              f"{prediction.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs\n")
        results = {name: _run_measurement(name, reference, prediction, arguments.repeat if name != "deepmind" else 1)
                   for name in ("read", "ours_whole", "ours_scoring", "deepmind")}
    read, whole, scoring, deep = (results[name] for name in ("read", "ours_whole", "ours_scoring", "deepmind"))
    decoded = read["decoded_bytes"]
    rows = [
        ("read only (nibabel, both files)", read["seconds"], read["peak_bytes"], "process peak RSS"),
        ("ours, whole case (score_files)", whole["seconds"], whole["peak_bytes"], "peak PSS, all processes"),
        ("ours, scoring 9 organs (score_case)", scoring["seconds"], scoring["peak_bytes"], "process peak RSS"),
        ("DeepMind, scoring 9 organs", deep["seconds"], deep["peak_bytes"], "process peak RSS"),
    ]
    print(f"{'measurement':<38}{'seconds':>9}{'peak memory':>14}  memory measured as")
    for label, seconds, peak, how in rows:
        print(f"{label:<38}{seconds:9.3f}{_mb(peak):>14}  {how}")
    print(f"\nCPU time of the whole case, all processes: {whole['cpu_seconds']:.3f} s")
    difference = np.nanmax(np.abs(np.array(scoring["values"], float) - np.array(deep["values"], float)))
    print(f"largest difference from DeepMind over DSC, NSD, HD95, ASSD of 9 organs: {difference:.3g}")
    print(f"decoded volumes: {_mb(decoded).strip()}; interpreter + libraries + arrays before scoring: "
          f"{_mb(scoring['baseline_bytes']).strip()} (ours), {_mb(deep['baseline_bytes']).strip()} (DeepMind)\n")
    speedup = deep["seconds"] / scoring["seconds"]
    whole_ratio = whole["seconds"] / read["seconds"]
    scoring_extra = scoring["peak_bytes"] - scoring["baseline_bytes"] + decoded
    print("targets")
    print(f"  our scoring >= 10x faster than DeepMind's:        {speedup:6.1f}x  {'met' if speedup >= 10 else 'NOT met'}")
    print(f"  whole case <= 3x the read-only time:             {whole_ratio:6.2f}x  {'met' if whole_ratio <= 3 else 'NOT met'}")
    limit = decoded + 300e6
    for label, peak in (("scoring only", scoring_extra), ("whole case", whole["peak_bytes"])):
        verdict = "met" if peak <= limit else "NOT met"
        print(f"  peak memory ({label}) <= decoded + 300 MB = {_mb(limit).strip()}: {_mb(peak).strip():>8}  {verdict}")


if __name__ == "__main__":
    main()
