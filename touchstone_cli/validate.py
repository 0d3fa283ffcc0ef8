"""`touchstone validate IMAGE --phase P`: run an image on the phase's public sample cases exactly as the
workers run it (`submissions.sandbox.container_settings`, through the same `SandboxRunner`), then check every
output with the scorer's own file checks (`evaluator.scoring.loading`). Each problem says what to change.

Needs the `validate` extra (docker, nibabel, numpy). Never imports Django.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import requests

from evaluator.choices import ExitReason
from evaluator.scoring.loading import LoadError, RefusalCategory, load_prediction, read_geometry
from submissions import sandbox

# The version of `validate --json`'s report.
SCHEMA_VERSION = 1

ADVICE: dict[RefusalCategory, str] = {
    RefusalCategory.MISSING_OUTPUT: "Write /output/<case_id>.nii.gz for every case listed in /input/cases.json.",
    RefusalCategory.NOT_REGULAR_FILE: "Write a regular file (no symlink, directory or FIFO) at /output/<case_id>.nii.gz.",
    RefusalCategory.CORRUPT_GZIP: "Write the whole file and close it before exiting (nib.save(img, path)).",
    RefusalCategory.TOO_LARGE: "Write compressed uint8 label maps (.nii.gz).",
    RefusalCategory.NOT_NIFTI: "Save a gzip-compressed NIfTI-1 image: nib.save(nib.Nifti1Image(labels, image.affine), path).",
    RefusalCategory.WRONG_DIMENSIONS: "Save a 3-D label map: drop channel, batch or time axes.",
    RefusalCategory.WRONG_SHAPE: "Save the labels on the input image's voxel grid: resample back to the input's "
                                 "shape (and axis order) before saving.",
    RefusalCategory.MISSING_AFFINE: "Save with the input image's affine and set qform and sform "
                                    "(out.set_qform(image.affine, code=1); out.set_sform(image.affine, code=1)).",
    RefusalCategory.WRONG_AFFINE: "Save with the input image's affine: nib.Nifti1Image(labels, image.affine), "
                                  "without reorienting or resampling the output.",
    RefusalCategory.SCALED_VALUES: "Save integer labels without scl_slope/scl_inter (an integer dtype such as uint8).",
    RefusalCategory.UNSUPPORTED_DATA_TYPE: "Save labels as uint8: np.asarray(labels, dtype=np.uint8).",
    RefusalCategory.NON_FINITE_VALUES: "Save labels as uint8, with no NaN or infinite values.",
    RefusalCategory.NON_INTEGER_VALUES: "Save integer labels (argmax, not probabilities) as uint8.",
    RefusalCategory.UNKNOWN_LABELS: "Use only the label ids in /input/labels.json (0 is background).",
}

RUN_ADVICE: dict[ExitReason, str] = {
    ExitReason.CANNOT_START: "Check the image's ENTRYPOINT/CMD exist and are linux/amd64 executables.",
    ExitReason.CRASHED: "Fix the error shown in its last output line; on the platform the cases without output "
                        "score worst.",
    ExitReason.TIMED_OUT: "Make it faster or use fewer CPUs' worth of threads; the limit is per case, plus a fixed "
                          "start-up allowance.",
    ExitReason.OUT_OF_MEMORY: "Use less memory: process one case at a time, free arrays, use float32 or smaller.",
    ExitReason.TOO_MANY_PROCESSES: "Cap worker processes and thread pools (e.g. OMP_NUM_THREADS, num_workers).",
    ExitReason.OUTPUT_TOO_LARGE: "Write only /output/<case_id>.nii.gz files, as compressed uint8 label maps.",
    ExitReason.BAD_OUTPUT: "Write /output/<case_id>.nii.gz for every case in /input/cases.json.",
}


class ValidationError(Exception):
    """Validation could not run (no such image, no Docker, no sample cases); the message says what to do."""


class Api(Protocol):
    server: str

    def get(self, path: str) -> Any: ...

    def get_all(self, path: str) -> list[Any]: ...

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response: ...


@dataclass(frozen=True)
class CaseCheck:
    case_id: str
    accepted: bool
    rule: str = ""  # the contract rule broken: a refusal category's value, e.g. "wrong_shape"
    problem: str = ""
    advice: str = ""


@dataclass
class ValidationReport:
    image: str
    phase: str
    runtime: str
    capped_output: bool
    exit_reason: str
    run_detail: str
    duration_s: float
    last_output_line: str
    cases: list[CaseCheck]
    notes: list[str] = field(default_factory=list)
    unexpected_files: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.exit_reason == ExitReason.OK.value and all(case.accepted for case in self.cases)

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "accepted": self.accepted, **asdict(self)}

    def render(self) -> str:
        lines = [*(f"Note: {note}" for note in self.notes)]
        outcome = ExitReason(self.exit_reason)
        lines.append(f"Ran {self.image} on {len(self.cases)} sample case(s) of {self.phase} under {self.runtime} "
                     f"in {self.duration_s:.1f} s: {outcome.label}.")
        if outcome is not ExitReason.OK:
            lines.append(f"  Problem: {self.run_detail}")
            if self.last_output_line:
                lines.append(f"  Last line of its output: {self.last_output_line}")
            if outcome in RUN_ADVICE:
                lines.append(f"  Change: {RUN_ADVICE[outcome]}")
        for case in self.cases:
            if case.accepted:
                lines.append(f"  {case.case_id}: accepted")
            else:
                lines.append(f"  {case.case_id}: REFUSED ({case.rule}) {case.problem}")
                lines.append(f"      Change: {case.advice}")
        if self.unexpected_files:
            lines.append(f"  Ignored files in /output: {', '.join(self.unexpected_files[:20])}")
        lines.append("The platform would accept every case." if self.accepted else
                     "The platform would NOT accept every case: fix the problems above before you submit.")
        return "\n".join(lines)


def validate_image(*, client: Api, image: str, phase: str, keep: Path | None = None,
                   runtime: str | None = None, gpu: bool | None = None) -> ValidationReport:
    """Download the phase's sample cases, run `image` on them in the workers' sandbox, check each output."""
    phase_info = next((p for p in client.get_all("phases/") if p["slug"] == phase), None)
    if phase_info is None:
        raise ValidationError(f"There is no phase '{phase}'. See `touchstone phases`.")
    samples = client.get(f"phases/{phase}/samples/")
    if not samples["cases"]:
        raise ValidationError(f"The organizers have published no sample cases for {phase}; "
                              "`touchstone validate` has nothing to run on.")
    labels = {int(key): name for key, name in samples["labels"].items()}
    try:
        engine = docker.from_env(timeout=120)
        image_id = engine.images.get(image).id
    except docker.errors.ImageNotFound:
        raise ValidationError(f"Docker has no image '{image}'. Build it first (docker build -t {image} .).") from None
    except docker.errors.DockerException as error:
        raise ValidationError(f"Cannot talk to the Docker engine ({error}). Is Docker running, and may you use it?") \
            from None
    notes: list[str] = []
    limits = _limits(phase_info, len(samples["cases"]), engine, notes, runtime=runtime, gpu=gpu)
    capped = os.geteuid() == 0
    if not capped:
        notes.append("Not run as root: /output is a plain directory, not the workers' size- and file-capped "
                     "filesystem (run as root for that check too).")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="touchstone-validate-"))
    work.mkdir(parents=True, exist_ok=True)
    runner = sandbox.SandboxRunner(engine)
    job_dir = work / "job"
    try:
        cases = _download(client, samples["cases"], work / "samples")
        input_dir, output_dir = runner.prepare_inputs(
            job_dir, cases, labels, user=limits.user,
            output_max_bytes=limits.output_max_bytes if capped else None, output_max_files=limits.output_max_files,
        )
        print(f"Running {image} on {len(cases)} sample case(s) under {limits.runtime} "
              f"(time limit {limits.time_limit_s:.0f} s, {limits.memory_mb} MB, {limits.cpus:g} CPUs) ...",
              file=sys.stderr, flush=True)
        try:
            result = runner.run(image_id=image_id, input_dir=input_dir, output_dir=output_dir, limits=limits,
                                name=f"touchstone-validate-{uuid.uuid4().hex[:12]}")
        except sandbox.PlatformError as error:
            raise ValidationError(f"Docker could not run the image here: {error}") from None
        collected = runner.collect_outputs(output_dir, [case.case_id for case in cases], work / "predictions",
                                           max_bytes=limits.output_max_bytes)
        checks = [_check_case(case, collected, labels) for case in cases]
    finally:
        runner.cleanup(job_dir)
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if keep is not None:
        notes.append(f"Inputs and collected outputs are kept in {work}.")
    exit_reason, detail = result.exit_reason, result.detail
    if exit_reason is ExitReason.OK and not collected.predictions:  # as the workers decide it
        exit_reason, detail = ExitReason.BAD_OUTPUT, "The container finished but wrote no /output/<case_id>.nii.gz file."
    return ValidationReport(
        image=image, phase=phase, runtime=limits.runtime, capped_output=capped, exit_reason=exit_reason.value,
        run_detail=detail, duration_s=round(result.duration_s, 2),
        last_output_line=result.last_line if exit_reason is not ExitReason.OK else "",
        cases=checks, notes=notes, unexpected_files=collected.unexpected,
    )


def _limits(phase: dict, n_cases: int, engine: docker.DockerClient, notes: list[str], *,
            runtime: str | None, gpu: bool | None) -> sandbox.SandboxLimits:
    """The limits a worker gives a job of `n_cases` of this phase (as `submissions.inference.job_limits`)."""
    use_gpu = phase["gpu"] if gpu is None else gpu
    wanted = runtime or ("runc" if use_gpu else "runsc")  # the workers' defaults for GPU and CPU phases
    available = set((engine.info().get("Runtimes") or {}).keys())
    if wanted not in available:
        fallback = "runc"
        notes.append(f"This Docker engine has no '{wanted}' runtime (the platform's; install gVisor for the exact "
                     f"check): ran under '{fallback}' with every other setting the workers use.")
        wanted = fallback
    overhead = int(phase["time_limit_overhead_s"])
    return sandbox.SandboxLimits(
        time_limit_s=overhead + phase["time_limit_per_case_s"] * n_cases,
        memory_mb=phase["memory_mb"], cpus=phase["cpus"], gpu=use_gpu, runtime=wanted,
    )


def _download(client: Api, cases: list[dict], folder: Path) -> list[sandbox.InputCase]:
    folder.mkdir(parents=True, exist_ok=True)
    downloaded = []
    for case in cases:
        target = folder / f"{case['case_id']}.nii.gz"
        if not (target.is_file() and target.stat().st_size == case["size_bytes"]):
            path = case["image_url"].split("/api/v1/", 1)[1]
            response = client.send("GET", path, stream=True)
            if response.status_code != 200:
                raise ValidationError(f"Could not download sample case {case['case_id']} (HTTP {response.status_code}).")
            partial = target.with_suffix(".partial")
            with open(partial, "wb") as handle:
                for chunk in response.iter_content(1 << 20):
                    handle.write(chunk)
            partial.rename(target)
        downloaded.append(sandbox.InputCase(case["case_id"], target))
    return downloaded


def _check_case(case: sandbox.InputCase, collected: sandbox.CollectedOutputs, labels: dict[int, str]) -> CaseCheck:
    """What the scorer would say of this case's output: accepted, or the rule it breaks and what to change."""
    if case.case_id in collected.rejected:
        reason = collected.rejected[case.case_id]
        category = RefusalCategory.MISSING_OUTPUT if reason.startswith("no output") else (
            RefusalCategory.TOO_LARGE if "limit" in reason else RefusalCategory.NOT_REGULAR_FILE)
        return CaseCheck(case.case_id, False, category.value, f"{category.label}: {reason}.", ADVICE[category])
    try:
        load_prediction(collected.predictions[case.case_id], read_geometry(case.image_path, role="image"), labels)
    except LoadError as error:
        advice = ADVICE.get(error.category, "Write the label map as the container contract asks.")
        if error.category is RefusalCategory.UNKNOWN_LABELS:
            advice += " Here: " + ", ".join(f"{key} {name}" for key, name in sorted(labels.items())) + "."
        return CaseCheck(case.case_id, False, error.category.value, str(error), advice)
    return CaseCheck(case.case_id, True)
