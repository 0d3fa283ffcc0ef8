"""The sandbox runner on a real Docker engine (gVisor where the host has it): limits, isolation, collection."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
from pathlib import Path

import pytest
from docker.types import DeviceRequest

from evaluator.choices import ExitReason
from submissions import sandbox
from submissions.sandbox import InputCase, SandboxLimits, SandboxRunner, container_settings

PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    mode = json.load(open("/input/mode.json"))["mode"]
    cases = json.load(open("/input/cases.json"))["cases"]
    def write(case, data=b"x"):
        with open(f"/output/{case}.nii.gz", "wb") as f: f.write(data)
    if mode == "ok":
        facts = {"uid": os.getuid(), "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])}
        try:
            open("/etc/probe", "w"); facts["root_writable"] = True
        except OSError:
            facts["root_writable"] = False
        try:
            open("/input/new", "w"); facts["input_writable"] = True
        except OSError:
            facts["input_writable"] = False
        print(json.dumps(facts))
        for c in cases: write(c["case_id"], open("/input/" + c["image"], "rb").read())
    elif mode == "crash":
        write(cases[0]["case_id"])
        print("processing", cases[0]["case_id"]); sys.stdout.flush()
        raise ValueError("orientation LPS is not supported")
    elif mode == "sleep":
        time.sleep(600)
    elif mode == "memory":
        hog = []
        while True: hog.append(bytearray(50 * 2**20))
    elif mode == "links":
        os.symlink("/etc/passwd", f"/output/{cases[0]['case_id']}.nii.gz")
        os.mkfifo(f"/output/{cases[1]['case_id']}.nii.gz")
        write(cases[2]["case_id"], b"y" * (3 * 2**20))
        write("not-a-case")
    """
)


@pytest.fixture(scope="session")
def probe_image(docker_client, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("probe")
    (context / "probe.py").write_text(PROBE)
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE=touchstone/base:latest\nFROM ${BASE_IMAGE}\nCOPY probe.py /probe.py\n"
        'USER 1000\nENTRYPOINT ["python3", "/probe.py"]\n'
    )
    image, _ = docker_client.images.build(path=str(context), tag="touchstone-test/probe:latest", rm=True)
    return image.id


def limits(**overrides) -> SandboxLimits:
    from django.conf import settings

    values = {"time_limit_s": 60, "memory_mb": 512, "cpus": 1.0, "runtime": settings.SANDBOX_RUNTIME}
    values.update(overrides)
    return SandboxLimits(**values)


def run_probe(runner: SandboxRunner, image: str, tmp_path: Path, mode: str, n_cases: int = 3, **limit_overrides):
    images = tmp_path / "hidden"
    images.mkdir()
    cases = []
    for index in range(n_cases):
        path = images / f"case{index}.nii.gz"
        path.write_bytes(f"image {index}".encode())
        cases.append(InputCase(f"case{index}", path))
    input_dir, output_dir = runner.prepare_inputs(
        tmp_path / "job", cases, {1: "liver"}, output_max_bytes=8 * 2**20, output_max_files=20
    )
    (input_dir / "mode.json").write_text(json.dumps({"mode": mode}))
    try:
        result = runner.run(
            image_id=image, input_dir=input_dir, output_dir=output_dir,
            limits=limits(output_max_bytes=8 * 2**20, output_max_files=20, **limit_overrides),
            name=f"touchstone-test-{mode}-{os.getpid()}",
        )
        collected = runner.collect_outputs(
            output_dir, [c.case_id for c in cases], tmp_path / "job" / "predictions", max_bytes=2 * 2**20
        )
    finally:
        runner.cleanup(tmp_path / "job")
    assert not os.path.ismount(output_dir) and not (tmp_path / "job" / sandbox.OUTPUT_IMAGE).exists()
    return result, collected


def test_container_settings_harden_every_container():
    settings = container_settings(
        image_id="sha256:abc", input_dir=Path("/data/in"), output_dir=Path("/data/out"),
        limits=SandboxLimits(time_limit_s=10, memory_mb=2048, cpus=1.5, nproc=300, pids_limit=5000), name="job-1",
        image_volumes=["/data", "/var/cache/", "/output", "/tmp", "/"],
    )
    assert settings["network_mode"] == "none"
    assert settings["cap_drop"] == ["ALL"]
    assert settings["security_opt"] == ["no-new-privileges"]
    assert settings["read_only"] is True and settings["init"] is True
    assert settings["user"] == "1000:1000"
    assert settings["mem_limit"] == settings["memswap_limit"] == "2048m"
    assert settings["nano_cpus"] == 1_500_000_000
    assert settings["runtime"] == "runsc"
    # gVisor: processes are capped by nproc inside; the cgroup's pids limit is a backstop for gVisor's threads.
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in settings["ulimits"]}
    assert ulimits["nproc"] == (300, 300) and settings["pids_limit"] == 5000
    assert ulimits["fsize"] == (2**30, 2**30)  # the larger of /tmp and /output and ulimits["core"] == (0, 0)
    # Every image VOLUME gets a capped tmpfs (no anonymous volume); the contract's own mounts are untouched.
    assert set(settings["tmpfs"]) == {"/tmp", "/data", "/var/cache"}
    assert all("noexec" in options and "size=" in options for options in settings["tmpfs"].values())
    assert settings["log_config"]["Config"] == {"max-size": str(2**20), "max-file": "2"}
    assert settings["shm_size"] == "256m"
    assert settings["volumes"]["/data/in"] == {"bind": "/input", "mode": "ro"}
    assert settings["volumes"]["/data/out"] == {"bind": "/output", "mode": "rw"}
    assert "device_requests" not in settings


def test_gpu_phase_requests_one_gpu_through_the_configured_driver():
    settings = container_settings(
        image_id="x", input_dir=Path("/i"), output_dir=Path("/o"), name="job",
        limits=SandboxLimits(time_limit_s=1, memory_mb=64, cpus=1, gpu=True, gpu_driver="nvidia", runtime="runc",
                             nproc=300),
    )
    (request,) = settings["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request["Driver"] == "nvidia" and request["Count"] == 1 and request["Capabilities"] == [["gpu"]]
    assert settings["runtime"] == "runc"
    # runc: the kernel's pids cgroup counts only this container, so it is the cap; nproc would count the uid host-wide.
    assert settings["pids_limit"] == 300
    assert "nproc" not in {u["Name"] for u in settings["ulimits"]}
    assert settings["read_only"] and settings["network_mode"] == "none" and settings["cap_drop"] == ["ALL"]


def test_prepare_inputs_lays_out_the_contract_without_ground_truth(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "a.nii.gz").write_bytes(b"image")
    (hidden / "a_label.nii.gz").write_bytes(b"secret")
    input_dir, output_dir = SandboxRunner.prepare_inputs(
        tmp_path / "job", [InputCase("a", hidden / "a.nii.gz")], {2: "gall_bladder", 1: "aorta"}
    )
    assert json.loads((input_dir / "cases.json").read_text()) == {"cases": [{"case_id": "a", "image": "images/a.nii.gz"}]}
    assert json.loads((input_dir / "labels.json").read_text()) == {"1": "aorta", "2": "gall_bladder"}
    assert sorted(p.name for p in (input_dir / "images").iterdir()) == ["a.nii.gz"]
    assert not any(b"secret" in p.read_bytes() for p in input_dir.rglob("*") if p.is_file())
    assert output_dir.is_dir() and not any(output_dir.iterdir())


@pytest.mark.integration
def test_a_good_container_runs_unprivileged_offline_on_a_read_only_root(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "ok")
    assert result.exit_reason == ExitReason.OK and result.exit_code == 0
    facts = json.loads(result.log_tail.strip().splitlines()[-1])
    assert facts["uid"] == 1000
    assert facts["interfaces"] == ["lo"]
    assert facts["root_writable"] is False
    assert facts["input_writable"] is False
    assert sorted(collected.predictions) == ["case0", "case1", "case2"]
    assert collected.predictions["case1"].read_bytes() == b"image 1"
    assert not collected.rejected


@pytest.mark.integration
def test_a_crash_is_the_teams_fault_and_keeps_partial_outputs(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "crash")
    assert result.exit_reason == ExitReason.CRASHED and result.exit_code == 1
    assert result.detail == "The container exited with code 1."  # never the container's own words
    assert result.last_line == "ValueError: orientation LPS is not supported"
    assert "processing case0" in result.log_tail
    assert list(collected.predictions) == ["case0"]
    assert collected.rejected == {
        "case1": "no output file /output/case1.nii.gz",
        "case2": "no output file /output/case2.nii.gz",
    }


@pytest.mark.integration
def test_a_container_past_its_time_limit_is_killed(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "sleep", time_limit_s=3)
    assert result.exit_reason == ExitReason.TIMED_OUT
    assert result.duration_s < 30
    assert "3 s" in result.detail
    assert not collected.predictions


@pytest.mark.integration
def test_a_container_over_its_memory_limit_is_reported_as_out_of_memory(probe_image, docker_client, tmp_path):
    result, _ = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "memory", memory_mb=200)
    assert result.exit_reason == ExitReason.OUT_OF_MEMORY, (result, result.log_tail)
    assert "200 MB" in result.detail


@pytest.mark.integration
def test_links_special_files_oversized_and_unexpected_outputs_are_refused(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "links")
    assert result.exit_reason == ExitReason.OK
    assert not collected.predictions
    assert "link" in collected.rejected["case0"]
    assert "case1" in collected.rejected  # gVisor keeps the FIFO inside the sandbox; runc shows it
    assert "limit" in collected.rejected["case2"]
    assert collected.unexpected == ["not-a-case.nii.gz"]


def test_collect_outputs_refuses_links_fifos_directories_and_oversized_files(tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(b"hidden ground truth")
    (output / "link.nii.gz").symlink_to(secret)
    os.mkfifo(output / "fifo.nii.gz")
    (output / "folder.nii.gz").mkdir()
    (output / "big.nii.gz").write_bytes(b"z" * 2048)
    (output / "good.nii.gz").write_bytes(b"label map")
    collected = SandboxRunner.collect_outputs(
        output, ["link", "fifo", "folder", "good", "big", "absent"], tmp_path / "predictions", max_bytes=1024
    )
    assert list(collected.predictions) == ["good"]
    assert (tmp_path / "predictions" / "good.nii.gz").read_bytes() == b"label map"
    assert "link" in collected.rejected["link"]
    assert "not a regular file" in collected.rejected["fifo"]
    assert "not a regular file" in collected.rejected["folder"] or "cannot be read" in collected.rejected["folder"]
    assert "limit" in collected.rejected["big"]
    assert "no output file" in collected.rejected["absent"]
    assert not (tmp_path / "predictions" / "link.nii.gz").exists()


def _tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.integration
def test_an_upload_that_is_not_a_docker_image_is_refused_with_advice(docker_client, tmp_path):
    tar = tmp_path / "upload.tar"
    tar.write_bytes(_tar_of({"hello.txt": b"not an image"}))
    with pytest.raises(sandbox.ImageRejected, match="docker save"):
        SandboxRunner(docker_client).load_image(tar)


@pytest.mark.integration
def test_a_saved_image_loads_and_is_checked(probe_image, docker_client, tmp_path):
    tar = tmp_path / "probe.tar"
    with open(tar, "wb") as handle:
        for chunk in docker_client.images.get(probe_image).save(named=True):
            handle.write(chunk)
    assert SandboxRunner(docker_client).load_image(tar) == probe_image


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"step 1\x00\x00done\n", "step 1\ufffd\ufffddone\n"),
        (b"caf\xe9 \xff\xfe", "caf\ufffd \ufffd\ufffd"),
        (b"\x1b[2J\x1b[31mred\x1b[0m \x1b]0;owned\x07title", "red title"),
        (b"50%\r100%\r\n", "50%\n100%\n"),
        ("name\udcff\u202egnp.nii.gz", "name\ufffd\ufffdgnp.nii.gz"),
        (b"\x07bell\x7f\x9b", "\ufffdbell\ufffd\ufffd"),
    ],
)
def test_safe_text_makes_container_bytes_storable_and_inert(raw, expected):
    text = sandbox.safe_text(raw)
    assert text == expected
    text.encode("utf-8")  # no surrogates left: PostgreSQL and every page can take it
    assert "\x00" not in text and "\x1b" not in text


def test_safe_text_keeps_the_tail_within_the_limit():
    assert sandbox.safe_text(b"a" * 100 + b"end", limit=3) == "end"


def _classified(**evidence):
    values = {"exit_code": 0, "killed": False, "oom_killed": False, "output_full": False, "duration_s": 1.0,
              "log_tail": "", "limits": SandboxLimits(time_limit_s=5, memory_mb=64, cpus=1)}
    values.update(evidence)
    return sandbox._classify(**values)


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ({"exit_code": 127}, sandbox.ExitReason.CANNOT_START),
        ({"exit_code": 126}, sandbox.ExitReason.CANNOT_START),
        ({"exit_code": 137, "oom_killed": True}, sandbox.ExitReason.OUT_OF_MEMORY),
        ({"exit_code": 1, "oom_killed": True}, sandbox.ExitReason.OUT_OF_MEMORY),  # a child was OOM-killed
        ({"exit_code": 0, "oom_killed": True}, sandbox.ExitReason.OK),  # it recovered and finished
        ({"exit_code": 137, "killed": True}, sandbox.ExitReason.TIMED_OUT),
        ({"exit_code": 137}, sandbox.ExitReason.CRASHED),  # SIGKILL from inside: neither OOM nor the platform
        ({"exit_code": 1, "output_full": True}, sandbox.ExitReason.OUTPUT_TOO_LARGE),
        ({"exit_code": 153}, sandbox.ExitReason.OUTPUT_TOO_LARGE),  # SIGXFSZ: the fsize ulimit
        ({"exit_code": 2, "log_tail": "sh: 1: Cannot fork"}, sandbox.ExitReason.TOO_MANY_PROCESSES),
        ({"exit_code": 137, "killed": True, "log_tail": "Resource temporarily unavailable"},
         sandbox.ExitReason.TOO_MANY_PROCESSES),
        ({"exit_code": 0, "log_tail": "Cannot fork"}, sandbox.ExitReason.OK),  # it coped: not a failure
        ({"exit_code": 1}, sandbox.ExitReason.CRASHED),
    ],
)
def test_outcomes_are_decided_by_evidence(evidence, reason):
    result = _classified(**evidence)
    assert result.exit_reason == reason, result.detail
    assert result.oom_killed == evidence.get("oom_killed", False)
    assert result.killed_at_time_limit == evidence.get("killed", False)


def test_a_killed_container_records_whether_memory_or_the_platform_killed_it():
    oom = _classified(exit_code=137, oom_killed=True)
    timeout = _classified(exit_code=137, killed=True)
    assert "out-of-memory" in oom.detail and "64 MB" in oom.detail
    assert "time limit" in timeout.detail.lower() or "5 s" in timeout.detail


def _host_config(docker_client, image: str, limits_: SandboxLimits, tmp_path: Path, name: str) -> dict:
    settings = container_settings(
        image_id=image, input_dir=tmp_path / "in", output_dir=tmp_path / "out", limits=limits_, name=name,
        image_volumes=["/data"],
    )
    container = docker_client.containers.create(**settings)
    try:
        return container.attrs["HostConfig"]
    finally:
        container.remove(force=True, v=True)


GOLDEN_HOST_CONFIG = {
    "NetworkMode": "none",
    "CapDrop": ["ALL"],
    "SecurityOpt": ["no-new-privileges"],
    "ReadonlyRootfs": True,
    "Init": True,
    "IpcMode": "private",
    "Memory": 256 * 2**20,
    "MemorySwap": 256 * 2**20,
    "NanoCpus": 1_000_000_000,
    "ShmSize": 64 * 2**20,
    "LogConfig": {"Type": "json-file", "Config": {"max-file": "2", "max-size": str(2**20)}},
    "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,mode=1777,size=100m", "/data": "rw,noexec,nosuid,nodev,mode=1777,size=16m"},
}


@pytest.mark.integration
def test_docker_reports_the_hardened_host_config_under_gvisor(docker_client, tmp_path):
    golden_limits = SandboxLimits(time_limit_s=5, memory_mb=256, cpus=1, nproc=300, pids_limit=5000, tmpfs_mb=100,
                                  volume_tmpfs_mb=16, shm_mb=64, output_max_bytes=50 * 2**20, runtime="runsc")
    host = _host_config(docker_client, "touchstone/base:latest", golden_limits, tmp_path, f"touchstone-golden-{os.getpid()}")
    assert {key: host[key] for key in GOLDEN_HOST_CONFIG} == GOLDEN_HOST_CONFIG
    assert host["Runtime"] == "runsc" and host["PidsLimit"] == 5000
    assert sorted((u["Name"], u["Soft"], u["Hard"]) for u in host["Ulimits"]) == [
        ("core", 0, 0), ("fsize", 100 * 2**20, 100 * 2**20), ("nofile", 4096, 4096), ("nproc", 300, 300)
    ]
    assert sorted(host["Binds"]) == [f"{tmp_path}/in:/input:ro", f"{tmp_path}/out:/output:rw"]
    assert not host.get("DeviceRequests") and not host.get("Privileged")


@pytest.mark.integration
def test_docker_reports_the_runc_gpu_host_config_with_every_other_hardening_kept(docker_client, tmp_path):
    gpu_limits = SandboxLimits(time_limit_s=5, memory_mb=256, cpus=1, nproc=300, tmpfs_mb=100, volume_tmpfs_mb=16,
                               shm_mb=64, output_max_bytes=50 * 2**20, runtime="runc", gpu=True, gpu_driver="nvidia")
    # Created, never started: this machine has no GPU.
    host = _host_config(docker_client, "touchstone/base:latest", gpu_limits, tmp_path, f"touchstone-golden-gpu-{os.getpid()}")
    assert {key: host[key] for key in GOLDEN_HOST_CONFIG} == GOLDEN_HOST_CONFIG
    assert host["Runtime"] == "runc" and host["PidsLimit"] == 300
    assert "nproc" not in {u["Name"] for u in host["Ulimits"]}
    (request,) = host["DeviceRequests"]
    assert request["Driver"] == "nvidia" and request["Count"] == 1 and request["Capabilities"] == [["gpu"]]


@pytest.mark.integration
def test_capped_output_is_a_fresh_filesystem_owned_by_the_container_user_and_unmounted_after(tmp_path):
    job = tmp_path / "job"
    _, output_dir = SandboxRunner.prepare_inputs(job, [], {}, output_max_bytes=8 * 2**20, output_max_files=10)
    try:
        assert os.path.ismount(output_dir) and not any(output_dir.iterdir())
        info = os.stat(output_dir)
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1000, 0o700)
        usage = os.statvfs(output_dir)
        assert usage.f_blocks * usage.f_frsize <= 8 * 2**20 and usage.f_favail <= 16
        for index in range(usage.f_favail):
            (output_dir / f"f{index}").touch()
        with pytest.raises(OSError, match="No space left"):
            (output_dir / "one-too-many").touch()
        assert sandbox._output_full(output_dir)
        # A retried attempt starts on a fresh filesystem.
        SandboxRunner.prepare_inputs(job, [], {}, output_max_bytes=8 * 2**20, output_max_files=10)
        assert not any(output_dir.iterdir())
    finally:
        SandboxRunner.cleanup(job)
    assert not os.path.ismount(output_dir) and not (job / sandbox.OUTPUT_IMAGE).exists()
