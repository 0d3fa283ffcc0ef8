"""The sandbox runner: runs a team's image on a job's cases under the container contract.

One class, four steps: prepare the inputs, run the container, collect its outputs safely, clean up.
`container_settings` is the one place that builds the hardened container configuration.
No Django imports: the runner takes plain values so it can be tested on a bare Docker engine.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, LogConfig, Ulimit

from evaluator.choices import ExitReason
from submissions import image_check

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
    # Processes + threads (gVisor: the `nproc` ulimit, enforced inside; runc: the cgroup pids limit).
    nproc: int = 1024
    # gVisor only: the cgroup pids limit, which counts gVisor's own host threads; a backstop far above nproc.
    pids_limit: int = 16384
    tmpfs_mb: int = 1024
    volume_tmpfs_mb: int = 64
    shm_mb: int = 256
    output_max_bytes: int = 512 * 2**20
    output_max_files: int = 1000
    log_max_bytes: int = 2**20
    user: str = "1000:1000"
    runtime: str = "runsc"
    gpu_driver: str = "nvidia"


@dataclass(frozen=True)
class InputCase:
    case_id: str
    image_path: Path


@dataclass(frozen=True)
class RunResult:
    exit_reason: ExitReason
    exit_code: int | None
    duration_s: float
    log_tail: str
    detail: str
    # The evidence behind exit_reason: the engine's OOM record, and whether the runner killed it at the limit.
    oom_killed: bool = False
    killed_at_time_limit: bool = False
    # The container printed that it could not fork or start a thread (EAGAIN at the process limit).
    process_limit_hit: bool = False
    # Its last words: the last line it wrote to stderr (where a crash's message goes), else to stdout. Taken
    # from stderr alone because the engine does not keep the order of lines across the two streams.
    last_line: str = ""


# Terminal escapes (CSI, OSC, and single-character ESC sequences), then any other control character: a
# container's bytes are shown in terminals (the CLI) and pages, and PostgreSQL refuses NUL in text.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_]?)")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(data: bytes | str, *, limit: int | None = None) -> str:
    """Container-made bytes or names as text that is safe to store and show.

    Invalid UTF-8 (and the surrogates `os.listdir` makes of it) becomes U+FFFD; NUL, other control
    characters and bidirectional overrides become U+FFFD; terminal escape sequences are removed; a carriage
    return becomes a line break. Newlines and tabs are kept. `limit` keeps the last `limit` characters.

    >>> safe_text(b"ok\x00\xff\x1b[31mred\x1b[0m\r\n")
    'ok\ufffd\ufffdred\n'
    >>> safe_text("caf\udce9.nii.gz")
    'caf\ufffd.nii.gz'
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("\ufffd", _ESCAPES.sub("", text))
    return text[-limit:] if limit is not None and len(text) > limit else text


def last_output_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of `text`, cut to `limit` characters.

    Container output is the team's to see only where the phase shares logs: a container reads hidden
    images and could print them.
    """
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")[:limit]


@dataclass
class CollectedOutputs:
    predictions: dict[str, Path] = field(default_factory=dict)
    # case_id → why its output was not taken (missing, not a regular file, too large).
    rejected: dict[str, str] = field(default_factory=dict)
    # Names in /output that are not an expected case (reported, never read).
    unexpected: list[str] = field(default_factory=list)


CONTRACT_MOUNTS = ("/input", "/output", "/tmp")


def container_settings(
    *, image_id: str, input_dir: Path, output_dir: Path, limits: SandboxLimits, name: str,
    image_volumes: Sequence[str] = (),
) -> dict:
    """The hardened `containers.create` keyword arguments for one job. The only place they are built.

    `image_volumes` are the image's declared VOLUMEs (its config's `Volumes`): each gets a capped tmpfs,
    since Docker would otherwise create an uncapped anonymous volume there that outlives the job.
    """
    memory = f"{limits.memory_mb}m"
    scratch = "rw,noexec,nosuid,nodev"
    tmpfs = {"/tmp": f"{scratch},mode=1777,size={limits.tmpfs_mb}m"}
    for volume in image_volumes:
        path = posixpath.normpath(volume)
        if path.startswith("/") and path != "/" and path not in CONTRACT_MOUNTS:
            tmpfs[path] = f"{scratch},mode=1777,size={limits.volume_tmpfs_mb}m"
    # One file may be as large as the largest writable place, no larger (a sparse 1 TB file fails at once).
    file_size_max = max(limits.tmpfs_mb * 2**20, limits.output_max_bytes)
    ulimits = [
        Ulimit(name="nofile", soft=4096, hard=4096),
        Ulimit(name="core", soft=0, hard=0),
        Ulimit(name="fsize", soft=file_size_max, hard=file_size_max),
    ]
    if limits.runtime == "runc":
        # The kernel counts only this container's tasks in its pids cgroup; nproc would count the uid host-wide.
        pids_limit = limits.nproc
    else:
        # gVisor counts its own host threads in the pids cgroup, but enforces nproc on the container's tasks.
        pids_limit = max(limits.pids_limit, 4 * limits.nproc)
        ulimits.append(Ulimit(name="nproc", soft=limits.nproc, hard=limits.nproc))
    settings: dict = {
        "image": image_id,
        "name": name,
        "detach": True,
        "user": limits.user,
        "init": True,  # a real PID 1 reaps orphans and forwards signals
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": tmpfs,
        "shm_size": f"{limits.shm_mb}m",
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to the memory limit: no swap
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": pids_limit,
        "ulimits": ulimits,
        "ipc_mode": "private",
        "log_config": LogConfig(
            type="json-file", config={"max-size": str(limits.log_max_bytes), "max-file": "2"}
        ),
        "environment": {"TOUCHSTONE_INPUT": "/input", "TOUCHSTONE_OUTPUT": "/output", "HOME": "/tmp"},
        "volumes": {
            str(input_dir): {"bind": "/input", "mode": "ro"},
            str(output_dir): {"bind": "/output", "mode": "rw"},
        },
        "labels": {"touchstone.job": name},
        "runtime": limits.runtime,
    }
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
    def load_image(
        self,
        tar_path: Path,
        *,
        repository: str = image_check.SUBMISSION_REPOSITORY + "/unassigned",
        limits: image_check.ImageLimits | None = None,
    ) -> str:
        """Check a team's tar without Docker, load it with its own tags removed, tag it `repository:<digest12>`.

        Returns the image id, which is the config digest computed from the tar. A refused tar never
        reaches Docker; a tar Docker refuses leaves no image behind.
        """
        try:
            checked = image_check.check_image_tar(tar_path, limits or image_check.ImageLimits())
        except image_check.ImageRefused as refusal:
            raise ImageRejected(safe_text(str(refusal))) from None  # it quotes names and fields from the upload
        existed = self._has_image(checked.image_id)
        try:
            loaded = [image.id for image in self.client.images.load(image_check.untagged_tar_stream(tar_path))]
        except (docker.errors.APIError, docker.errors.ImageLoadError) as error:
            if not existed:
                self._remove_image(checked.image_id)
            explanation = str(getattr(error, "explanation", None) or error)
            if "no space left" in explanation:
                raise PlatformError(f"Docker ran out of disk space loading {checked.image_id}: {explanation}") from error
            # The engine's own words carry host paths: staff read them in the log, the team gets advice.
            logging.getLogger(__name__).warning("docker load of %s refused: %s", tar_path, explanation)
            raise ImageRejected(
                "Docker could not load the image's layers. Upload the unchanged output of `docker save IMAGE:TAG` "
                "(uncompressed or gzip layers)."
            ) from None
        except requests.exceptions.RequestException as error:
            raise PlatformError(f"Docker engine unreachable while loading an image: {error}") from error
        if loaded != [checked.image_id]:
            for image_id in set(loaded) - ({checked.image_id} if existed else set()):
                self._remove_image(image_id)
            raise PlatformError(
                f"Docker reports {loaded} for a tar whose config digest is {checked.image_id}: this engine does not "
                "identify images by config digest (use the classic image store, not the containerd one)."
            )
        try:
            self.client.images.get(checked.image_id).tag(repository, tag=checked.tag)
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker could not tag {checked.image_id}: {error}") from error
        return checked.image_id

    def ensure_image(
        self,
        image_id: str,
        tar_path: Path,
        *,
        repository: str = image_check.SUBMISSION_REPOSITORY + "/unassigned",
        limits: image_check.ImageLimits | None = None,
    ) -> None:
        """Make sure this Docker engine has the image, loading it (untagged, then re-tagged) from the shared tar if not.

        The tar was checked under the caps at intake, so by default no caps are re-applied here (a
        settings change must not strand an accepted image); its structure and digests are still checked.
        """
        try:
            self.client.images.get(image_id)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker engine error while looking up the image: {error}") from error
        loaded = self.load_image(tar_path, repository=repository, limits=limits or image_check.ImageLimits.uncapped())
        if loaded != image_id:
            raise PlatformError(f"The stored tar loads as {loaded}, not the validated image {image_id}.")

    def _has_image(self, image_id: str) -> bool:
        try:
            self.client.images.get(image_id)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as error:
            raise PlatformError(f"Docker engine error while looking up the image: {error}") from error

    def _remove_image(self, image_id: str) -> None:
        """Remove an image this runner loaded (and its layers no other image uses)."""
        try:
            self.client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as error:
            logging.getLogger(__name__).warning("could not remove refused image %s: %s", image_id, error)

    # --- the four steps ---------------------------------------------------------------------------
    @staticmethod
    def prepare_inputs(
        job_dir: Path,
        cases: Sequence[InputCase],
        labels: Mapping[int, str],
        *,
        user: str = "1000:1000",
        output_max_bytes: int | None = None,
        output_max_files: int = 1000,
    ) -> tuple[Path, Path]:
        """Lay out /input (cases.json, labels.json, images/) and an empty /output for one job.

        Images are hard-linked when the hidden data lives on the same filesystem, copied otherwise.
        Ground truth never enters the job directory. With `output_max_bytes`, /output is a fresh ext4
        filesystem of that size and `output_max_files` files, loop-mounted here (the worker must be root):
        the host kernel refuses the container's writes past either cap, whatever the runtime.
        """
        input_dir, output_dir = job_dir / "input", job_dir / "output"
        if job_dir.exists():  # a retried attempt starts clean
            unmount(output_dir)
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
        uid_text, _, gid_text = user.partition(":")
        uid, gid = int(uid_text), int(gid_text or uid_text)
        if output_max_bytes is not None:
            _mount_capped_output(
                job_dir / OUTPUT_IMAGE, output_dir, max_bytes=output_max_bytes, max_files=output_max_files,
                uid=uid, gid=gid,
            )
            return input_dir, output_dir
        # The container's user (uid 1000) must be able to write /output; nobody else needs to.
        try:
            os.chown(output_dir, uid, gid)
            output_dir.chmod(0o700)
        except PermissionError:  # not root (development machine): fall back to a world-writable dir
            output_dir.chmod(0o777)
        return input_dir, output_dir

    def run(self, *, image_id: str, input_dir: Path, output_dir: Path, limits: SandboxLimits, name: str) -> RunResult:
        """Run the container to completion or its wall-clock limit, whichever comes first.

        Returns a team-side outcome decided by evidence, or raises PlatformError (retried, never charged)
        when the engine failed. The container and its volumes are removed whatever happens.
        """
        self._remove_if_exists(name)
        try:
            image_volumes = sorted((self.client.images.get(image_id).attrs.get("Config") or {}).get("Volumes") or {})
            settings = container_settings(
                image_id=image_id, input_dir=input_dir, output_dir=output_dir, limits=limits, name=name,
                image_volumes=image_volumes,
            )
            container = self.client.containers.create(**settings)
        except docker.errors.ImageNotFound as error:
            raise PlatformError(f"Image {image_id} is not on this Docker engine: {error}") from error
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise PlatformError(f"Docker could not create the container: {error}") from error
        started = time.monotonic()
        try:
            try:
                container.start()
            except docker.errors.APIError as error:
                if _is_image_start_failure(error):
                    return RunResult(
                        ExitReason.CANNOT_START, None, time.monotonic() - started, "",
                        "The container could not start: its ENTRYPOINT/CMD does not exist in the image or is not a "
                        "linux/amd64 executable. Check them with `touchstone validate`.",
                    )
                raise PlatformError(f"Docker could not start the container: {error}") from error
            exit_code, killed = self._wait(container, limits.time_limit_s)
            duration_s = time.monotonic() - started
            container.reload()
            oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
            log_tail = self._log_tail(container)
            last_line = last_output_line(safe_text(container.logs(stdout=False, stderr=True, tail=20))) or (
                last_output_line(log_tail)
            )
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise PlatformError(f"Docker failed while running the container: {error}") from error
        finally:
            self._remove_if_exists(name)
        return _classify(
            exit_code=exit_code, killed=killed, oom_killed=oom_killed, output_full=_output_full(output_dir),
            duration_s=duration_s, log_tail=log_tail, last_line=last_line, limits=limits,
        )

    @staticmethod
    def collect_outputs(output_dir: Path, case_ids: Sequence[str], dest_dir: Path, *, max_bytes: int) -> CollectedOutputs:
        """Take `<case_id>.nii.gz` regular files only: no links, devices, FIFOs or directories, under a size cap.

        Files are opened with O_NOFOLLOW and checked with fstat on the opened descriptor, so a file swapped
        for a link between check and read is still refused. Copies land in dest_dir, owned by the platform.
        Unexpected names are reported through `safe_text` (they are the container's bytes), 50 at most.
        """
        collected = CollectedOutputs()
        dest_dir.mkdir(parents=True, exist_ok=True)
        expected = {f"{case_id}{OUTPUT_SUFFIX}": case_id for case_id in case_ids}
        present: set[str] = set()
        unexpected: list[str] = []
        try:
            with os.scandir(output_dir) as entries:
                for entry in entries:
                    if entry.name in expected:
                        present.add(entry.name)
                    elif len(unexpected) < 50:
                        unexpected.append(safe_text(entry.name, limit=200))
        except OSError:
            pass
        collected.unexpected = sorted(unexpected)
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
        """Unmount the job's /output filesystem, remove its image and the input and raw output directories.

        Collected predictions are kept.
        """
        unmount(job_dir / "output")
        (job_dir / OUTPUT_IMAGE).unlink(missing_ok=True)
        for sub in ("input", "output"):
            shutil.rmtree(job_dir / sub, ignore_errors=True)

    # --- helpers ----------------------------------------------------------------------------------
    def _remove_if_exists(self, name: str) -> None:
        """Remove the container and its anonymous volumes (v=True), if it exists."""
        try:
            self.client.containers.get(name).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise PlatformError(f"Docker could not remove container {name}: {error}") from error

    def _wait(self, container, time_limit_s: float) -> tuple[int, bool]:
        """(exit code, whether the runner killed it at the time limit). A lost engine is a PlatformError."""
        deadline = time.monotonic() + time_limit_s
        try:
            return int(container.wait(timeout=time_limit_s).get("StatusCode", -1)), False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
            # docker-py reports the read timeout of a wait as either; only the clock and a ping tell them apart.
            if time.monotonic() < deadline - 1 or not self._engine_answers():
                raise PlatformError(f"Lost the Docker engine while the container ran: {error}") from error
        try:
            container.kill()
        except docker.errors.APIError:
            container.reload()
            if container.status == "running":
                raise
            return int(container.wait(timeout=60).get("StatusCode", -1)), False  # it ended on its own just then
        return int(container.wait(timeout=60).get("StatusCode", -1)), True

    def _engine_answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001 - any failure means the engine is gone
            return False

    def _log_tail(self, container) -> str:
        raw = container.logs(stdout=True, stderr=True, tail=400)
        return safe_text(raw[-self.log_tail_bytes :])


OUTPUT_IMAGE = "output.ext4"
# Signals as exit codes (128 + signal): SIGKILL and SIGXFSZ (a file reached the fsize ulimit).
EXIT_SIGKILL, EXIT_SIGXFSZ = 137, 153
# What a process prints when fork/clone/thread creation hits the process limit (EAGAIN).
_PROCESS_LIMIT_SIGNS = re.compile(
    r"resource temporarily unavailable|cannot fork|can't fork|can't start new thread|fork: retry|"
    r"unable to create (?:new native )?thread|pthread_create failed",
    re.IGNORECASE,
)


def _is_image_start_failure(error: docker.errors.APIError) -> bool:
    """Whether the engine refused to start the container because of the image's own command."""
    text = str(getattr(error, "explanation", None) or error).lower()
    return any(
        sign in text
        for sign in ("executable file not found", "exec format error", "no such file or directory", "permission denied")
    ) and ("exec" in text or "entrypoint" in text or "starting container process" in text)


def _classify(
    *, exit_code: int, killed: bool, oom_killed: bool, output_full: bool, duration_s: float, log_tail: str,
    limits: SandboxLimits, last_line: str = "",
) -> RunResult:
    """Decide the team-side outcome from evidence: the exit code, the engine's OOM record, whether the runner
    killed the container at the time limit, whether /output's filesystem is full, and fork failures.

    No container output goes into a detail: a detail is shown wherever the job is, and output can carry
    hidden data. The order puts the most specific, actionable evidence first.
    """
    def result(reason: ExitReason, detail: str) -> RunResult:
        return RunResult(
            reason, exit_code, duration_s, log_tail, detail, oom_killed, killed,
            process_limit_hit=process_limit_hit, last_line=last_line,
        )

    process_limit_hit = bool(_PROCESS_LIMIT_SIGNS.search(log_tail))

    if exit_code in (126, 127) and not killed and not oom_killed:
        return result(ExitReason.CANNOT_START, (
            f"The container's command could not be run (exit {exit_code}: not found or not executable). "
            "Check the image's ENTRYPOINT/CMD and that every program it calls exists in the image."
        ))
    if output_full or exit_code == EXIT_SIGXFSZ:
        return result(ExitReason.OUTPUT_TOO_LARGE, (
            f"The container filled /output (limit {limits.output_max_bytes // 2**20} MiB and "
            f"{limits.output_max_files} files) or wrote a file past the file-size limit. Write only "
            "/output/<case_id>.nii.gz, compressed; keep scratch files in /tmp."
        ))
    if (exit_code != 0 or killed) and not oom_killed and process_limit_hit:
        return result(ExitReason.TOO_MANY_PROCESSES, (
            f"The container could not create more processes or threads (limit {limits.nproc} together) and "
            f"{'was stopped at the time limit' if killed else f'exited with code {exit_code}'}. Cap worker "
            "processes and thread pools (e.g. OMP_NUM_THREADS, DataLoader num_workers)."
        ))
    if oom_killed and exit_code != 0:
        return result(ExitReason.OUT_OF_MEMORY, (
            f"The container was killed (exit {exit_code}) for using more than its {limits.memory_mb} MB of memory "
            "(the engine recorded an out-of-memory kill)."
        ))
    if killed:
        return result(ExitReason.TIMED_OUT, (
            f"The container ran longer than the phase's limit of {limits.time_limit_s:.0f} s and was stopped."
        ))
    if exit_code == EXIT_SIGKILL:
        return result(ExitReason.CRASHED, (
            "The container was killed by SIGKILL (exit 137), neither by the memory limit (no out-of-memory "
            "record) nor by the platform's time limit: a process of the container killed it."
        ))
    if exit_code != 0:
        signal_note = f" (signal {exit_code - 128})" if exit_code > 128 else ""
        return result(ExitReason.CRASHED, f"The container exited with code {exit_code}{signal_note}.")
    return result(ExitReason.OK, "The container finished.")


def _mount_capped_output(image: Path, mount_point: Path, *, max_bytes: int, max_files: int, uid: int, gid: int) -> None:
    """A fresh ext4 filesystem of `max_bytes` and `max_files` inodes in `image`, loop-mounted on `mount_point`.

    The image is fully allocated first, so a host disk that fills later cannot fail the container's
    writes: a full host disk shows here, as a PlatformError, before the container starts.
    """
    size = max(max_bytes, 4 * 2**20)  # mkfs's floor
    try:
        with open(image, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        image.unlink(missing_ok=True)
        raise PlatformError(f"The worker's disk is full: cannot allocate {size} bytes for /output ({error}).") from error
    # ext4 reserves 11 inodes and the root directory takes one: add them to the team's file count.
    inodes = max_files + 16
    _host_command(
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(inodes), "-O", "^has_journal,^resize_inode",
         "-E", f"root_owner={uid}:{gid}", str(image)],
        what="create the /output filesystem",
    )
    _host_command(
        ["mount", "-o", "loop,nosuid,nodev,noexec", str(image), str(mount_point)], what="mount the /output filesystem"
    )
    (mount_point / "lost+found").rmdir()
    mount_point.chmod(0o700)


def unmount(mount_point: Path) -> None:
    """Unmount a job's /output filesystem if mounted; lazily if a process still holds it.

    Mounted with `-o loop`, its loop device is set to auto-clear: the kernel detaches it once the
    filesystem is released, so there is no loop device to detach here. Idempotent, and safe when another
    process (the worker itself, or a reaper) unmounts the same point at the same moment.
    """
    if not os.path.ismount(mount_point):
        return
    if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode == 0:
        return
    try:
        _host_command(["umount", "-l", str(mount_point)], what="unmount the /output filesystem")
    except PlatformError:
        if os.path.ismount(mount_point):  # not someone else's unmount racing ours: a real failure
            raise


def _mountinfo_unescape(field: bytes) -> Path:
    """A path as /proc/self/mountinfo writes it: space, tab, newline and backslash as octal escapes."""
    raw = re.sub(rb"\\([0-7]{3})", lambda match: bytes([int(match.group(1), 8)]), field)
    return Path(os.fsdecode(raw))


def mounts_under(root: Path) -> list[tuple[Path, str]]:
    """(mount point, filesystem type) of every mount strictly below `root` in this process's mount namespace.

    Deepest first, so unmounting in this order never finds a mount still holding another. `root` is
    resolved (mount points are real paths); a Linux `/proc/self/mountinfo` is read.
    """
    base = Path(os.path.realpath(root))
    found = []
    for line in Path("/proc/self/mountinfo").read_bytes().split(b"\n"):  # "\n" in a path is escaped; "\r" is not
        fields, _, tail = line.partition(b" - ")
        parts = fields.split()
        if len(parts) < 5 or not tail:
            continue
        mount_point = _mountinfo_unescape(parts[4])
        if mount_point != base and mount_point.is_relative_to(base):
            found.append((mount_point, os.fsdecode(tail.split()[0])))
    return sorted(found, key=lambda mount: len(mount[0].parts), reverse=True)


def _host_command(command: list[str], *, what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PlatformError(f"Could not {what} (`{command[0]}`: {error}).") from error
    if done.returncode != 0:
        raise PlatformError(
            f"Could not {what}: `{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[:500]}. "
            "The inference worker must run as root with e2fsprogs and loop devices "
            "(or set TOUCHSTONE_SANDBOX_CAPPED_OUTPUT=false on a development machine)."
        )


def _output_full(output_dir: Path) -> bool:
    """Whether the capped /output filesystem ran out of space or files (only a mounted one is capped)."""
    if not os.path.ismount(output_dir):
        return False
    usage = os.statvfs(output_dir)
    # ext4 keeps a few hundred KiB it cannot hand out once full: "full" is under 1 MiB or 0.5 % left.
    return usage.f_favail == 0 or usage.f_bavail * usage.f_frsize < max(2**20, usage.f_blocks * usage.f_frsize // 200)


def _copy_capped(source, sink, budget: int) -> int | None:
    """Copy at most `budget` bytes; None if the source holds more (it grew after the size check)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > budget:
            return None
        sink.write(chunk)
    return copied
