"""The sandbox runner: runs a team's image on a job's cases under the container contract.

One class, four steps: prepare the inputs, run the container, collect its outputs safely, clean up.
`container_settings` is the one place that builds the hardened container configuration.
No Django imports: the runner takes plain values so it can be tested on a bare Docker engine.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Ulimit

# Exit reasons, matching submissions.models.ExitReason values.
OK, CRASHED, TIMED_OUT, OUT_OF_MEMORY, BAD_OUTPUT = "ok", "crashed", "timed_out", "out_of_memory", "bad_output"
OUTPUT_SUFFIX = ".nii.gz"


class PlatformError(Exception):
    """The platform, not the team, failed (Docker engine error, missing image): the job is retried."""


class ImageRejected(Exception):
    """The uploaded image cannot be run; the message says what to change."""


@dataclass(frozen=True)
class SandboxLimits:
    time_limit_s: float
    memory_mb: int
    cpus: float
    gpu: bool = False
    pids_limit: int = 256
    tmpfs_mb: int = 1024
    user: str = "1000:1000"
    runtime: str = "runsc"
    gpu_driver: str = "nvidia"


@dataclass(frozen=True)
class InputCase:
    case_id: str
    image_path: Path


@dataclass(frozen=True)
class RunResult:
    exit_reason: str
    exit_code: int | None
    duration_s: float
    log_tail: str
    detail: str


def last_output_line(log_tail: str, limit: int = 300) -> str:
    """The last non-empty line a container printed (a crash's message), cut to `limit` characters.

    Container output is the team's to see only where the phase shares logs: a container reads hidden
    images and could print them.
    """
    return next((line for line in reversed(log_tail.splitlines()) if line.strip()), "")[:limit]


@dataclass
class CollectedOutputs:
    predictions: dict[str, Path] = field(default_factory=dict)
    # case_id → why its output was not taken (missing, not a regular file, too large).
    rejected: dict[str, str] = field(default_factory=dict)
    # Names in /output that are not an expected case (reported, never read).
    unexpected: list[str] = field(default_factory=list)


def container_settings(
    *, image_id: str, input_dir: Path, output_dir: Path, limits: SandboxLimits, name: str
) -> dict:
    """The hardened `containers.create` keyword arguments for one job. The only place they are built."""
    memory = f"{limits.memory_mb}m"
    settings: dict = {
        "image": image_id,
        "name": name,
        "detach": True,
        "user": limits.user,
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,size={limits.tmpfs_mb}m"},
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to the memory limit: no swap
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids_limit,
        "ulimits": [Ulimit(name="nofile", soft=4096, hard=4096), Ulimit(name="core", soft=0, hard=0)],
        "ipc_mode": "private",
        "environment": {"TOUCHSTONE_INPUT": "/input", "TOUCHSTONE_OUTPUT": "/output", "HOME": "/tmp"},
        "volumes": {
            str(input_dir): {"bind": "/input", "mode": "ro"},
            str(output_dir): {"bind": "/output", "mode": "rw"},
        },
        "labels": {"touchstone.job": name},
    }
    if limits.runtime and limits.runtime != "runc":
        settings["runtime"] = limits.runtime
    if limits.gpu:
        settings["device_requests"] = [
            DeviceRequest(driver=limits.gpu_driver, count=1, capabilities=[["gpu"]])
        ]
    return settings


class SandboxRunner:
    """Runs one job: prepare_inputs → run → collect_outputs → cleanup."""

    def __init__(self, client: docker.DockerClient | None = None, *, log_tail_bytes: int = 16384):
        self.client = client or docker.from_env(timeout=120)
        self.log_tail_bytes = log_tail_bytes

    # --- images -----------------------------------------------------------------------------------
    def load_image(self, tar_path: Path) -> str:
        """`docker load` a team's tar; returns the image id. Refuses tars that are not one linux/amd64 image."""
        try:
            with open(tar_path, "rb") as tar:
                images = self.client.images.load(tar)
        except (docker.errors.APIError, docker.errors.ImageLoadError) as error:
            raise ImageRejected(
                f"Docker could not load the upload: {getattr(error, 'explanation', None) or error}. Upload the output of "
                "`docker save IMAGE`."
            ) from None
        if len(images) != 1:
            raise ImageRejected(
                f"The upload holds {len(images)} images; save exactly one (`docker save IMAGE:TAG`)."
            )
        image = images[0]
        attrs = image.attrs
        if attrs.get("Os") != "linux" or attrs.get("Architecture") != "amd64":
            raise ImageRejected(
                f"The image is {attrs.get('Os')}/{attrs.get('Architecture')}; the platform runs linux/amd64. "
                "Build with `docker build --platform linux/amd64`."
            )
        config = attrs.get("Config") or {}
        if not config.get("Entrypoint") and not config.get("Cmd"):
            raise ImageRejected("The image has neither ENTRYPOINT nor CMD: the platform would not know what to run.")
        return image.id

    def ensure_image(self, image_id: str, tar_path: Path) -> None:
        """Make sure this Docker engine has the image, loading it from the shared tar if not."""
        try:
            self.client.images.get(image_id)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker engine error while looking up the image: {error}") from error
        loaded = self.load_image(tar_path)
        if loaded != image_id:
            raise PlatformError(f"The stored tar loads as {loaded}, not the validated image {image_id}.")

    # --- the four steps ---------------------------------------------------------------------------
    @staticmethod
    def prepare_inputs(
        job_dir: Path, cases: Sequence[InputCase], labels: Mapping[int, str], *, user: str = "1000:1000"
    ) -> tuple[Path, Path]:
        """Lay out /input (cases.json, labels.json, images/) and an empty /output for one job.

        Images are hard-linked when the hidden data lives on the same filesystem, copied otherwise.
        Ground truth never enters the job directory.
        """
        input_dir, output_dir = job_dir / "input", job_dir / "output"
        if job_dir.exists():  # a retried attempt starts clean
            shutil.rmtree(job_dir)
        (input_dir / "images").mkdir(parents=True)
        output_dir.mkdir()
        entries = []
        for case in cases:
            target = input_dir / "images" / f"{case.case_id}{OUTPUT_SUFFIX}"
            try:
                os.link(case.image_path, target)
            except OSError:
                shutil.copyfile(case.image_path, target)
            target.chmod(0o444)
            entries.append({"case_id": case.case_id, "image": f"images/{target.name}"})
        (input_dir / "cases.json").write_text(json.dumps({"cases": entries}, indent=1))
        (input_dir / "labels.json").write_text(json.dumps({str(k): v for k, v in sorted(labels.items())}, indent=1))
        for path in (input_dir, input_dir / "images"):
            path.chmod(0o755)
        for path in (input_dir / "cases.json", input_dir / "labels.json"):
            path.chmod(0o444)
        # The container's user (uid 1000) must be able to write /output; nobody else needs to.
        uid_text, _, gid_text = user.partition(":")
        try:
            os.chown(output_dir, int(uid_text), int(gid_text or uid_text))
            output_dir.chmod(0o700)
        except PermissionError:  # not root (development machine): fall back to a world-writable dir
            output_dir.chmod(0o777)
        return input_dir, output_dir

    def run(self, *, image_id: str, input_dir: Path, output_dir: Path, limits: SandboxLimits, name: str) -> RunResult:
        """Run the container to completion or its wall-clock limit, whichever comes first."""
        settings = container_settings(
            image_id=image_id, input_dir=input_dir, output_dir=output_dir, limits=limits, name=name
        )
        self._remove_if_exists(name)
        try:
            container = self.client.containers.create(**settings)
        except docker.errors.ImageNotFound as error:
            raise PlatformError(f"Image {image_id} is not on this Docker engine: {error}") from error
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker could not create the container: {error}") from error
        started = time.monotonic()
        try:
            container.start()
            timed_out = False
            try:
                status = container.wait(timeout=limits.time_limit_s)
                exit_code = int(status.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                exit_code = int(container.wait(timeout=60).get("StatusCode", -1))
            duration_s = time.monotonic() - started
            container.reload()
            oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
            log_tail = self._log_tail(container)
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker failed while running the container: {error}") from error
        finally:
            self._remove_if_exists(name)
        return self._classify(exit_code, timed_out, oom_killed, duration_s, log_tail, limits)

    @staticmethod
    def collect_outputs(output_dir: Path, case_ids: Sequence[str], dest_dir: Path, *, max_bytes: int) -> CollectedOutputs:
        """Take `<case_id>.nii.gz` regular files only: no links, devices, FIFOs or directories, under a size cap.

        Files are opened with O_NOFOLLOW and checked with fstat on the opened descriptor, so a file swapped
        for a link between check and read is still refused. Copies land in dest_dir, owned by the platform.
        """
        collected = CollectedOutputs()
        dest_dir.mkdir(parents=True, exist_ok=True)
        expected = {f"{case_id}{OUTPUT_SUFFIX}": case_id for case_id in case_ids}
        try:
            present = sorted(os.listdir(output_dir))
        except OSError:
            present = []
        collected.unexpected = [name for name in present if name not in expected][:50]
        total = 0
        for file_name, case_id in expected.items():
            if file_name not in present:
                collected.rejected[case_id] = f"no output file /output/{file_name}"
                continue
            try:
                fd = os.open(output_dir / file_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                collected.rejected[case_id] = f"/output/{file_name} is a link or cannot be read; write a regular file"
                continue
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                collected.rejected[case_id] = f"/output/{file_name} is not a regular file"
                continue
            with os.fdopen(fd, "rb") as source:
                if total + info.st_size > max_bytes:
                    collected.rejected[case_id] = (
                        f"outputs exceed the {max_bytes // 2**20} MiB limit of a job; write compressed uint8 label maps"
                    )
                    continue
                target = dest_dir / file_name
                with open(target, "wb") as sink:
                    copied = _copy_capped(source, sink, max_bytes - total)
                if copied is None:
                    target.unlink()
                    collected.rejected[case_id] = f"/output/{file_name} grew past the output size limit"
                    continue
                total += copied
                collected.predictions[case_id] = target
        return collected

    @staticmethod
    def cleanup(job_dir: Path) -> None:
        """Remove the job's input and raw output directories (collected predictions are kept)."""
        for sub in ("input", "output"):
            shutil.rmtree(job_dir / sub, ignore_errors=True)

    # --- helpers ----------------------------------------------------------------------------------
    def _remove_if_exists(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker could not remove container {name}: {error}") from error

    def _log_tail(self, container) -> str:
        raw = container.logs(stdout=True, stderr=True, tail=400)
        return raw[-self.log_tail_bytes :].decode("utf-8", errors="replace")

    @staticmethod
    def _classify(exit_code, timed_out, oom_killed, duration_s, log_tail, limits) -> RunResult:
        if timed_out:
            reason, detail = TIMED_OUT, (
                f"The container ran longer than the phase's limit of {limits.time_limit_s:.0f} s and was stopped."
            )
        elif oom_killed or exit_code == 137:
            reason, detail = OUT_OF_MEMORY, (
                f"The container was killed (exit {exit_code}) for using more than its {limits.memory_mb} MB of memory."
            )
        elif exit_code != 0:
            # No container output here: a detail is shown wherever the job is, and output can carry hidden data.
            reason, detail = CRASHED, f"The container exited with code {exit_code}."
        else:
            reason, detail = OK, "The container finished."
        return RunResult(reason, exit_code, duration_s, log_tail, detail)



def _copy_capped(source, sink, budget: int) -> int | None:
    """Copy at most `budget` bytes; None if the source holds more (it grew after the size check)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > budget:
            return None
        sink.write(chunk)
    return copied
