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
    input_dir, output_dir = runner.prepare_inputs(tmp_path / "job", cases, {1: "liver"})
    (input_dir / "mode.json").write_text(json.dumps({"mode": mode}))
    result = runner.run(
        image_id=image, input_dir=input_dir, output_dir=output_dir, limits=limits(**limit_overrides),
        name=f"touchstone-test-{mode}-{os.getpid()}",
    )
    collected = runner.collect_outputs(
        output_dir, [c.case_id for c in cases], tmp_path / "job" / "predictions", max_bytes=2 * 2**20
    )
    return result, collected


def test_container_settings_harden_every_container():
    settings = container_settings(
        image_id="sha256:abc", input_dir=Path("/data/in"), output_dir=Path("/data/out"),
        limits=SandboxLimits(time_limit_s=10, memory_mb=2048, cpus=1.5, pids_limit=128), name="job-1",
    )
    assert settings["network_mode"] == "none"
    assert settings["cap_drop"] == ["ALL"]
    assert settings["security_opt"] == ["no-new-privileges"]
    assert settings["read_only"] is True
    assert settings["user"] == "1000:1000"
    assert settings["mem_limit"] == settings["memswap_limit"] == "2048m"
    assert settings["nano_cpus"] == 1_500_000_000
    assert settings["pids_limit"] == 128
    assert settings["runtime"] == "runsc"
    assert "/tmp" in settings["tmpfs"] and "noexec" in settings["tmpfs"]["/tmp"]
    assert settings["volumes"]["/data/in"] == {"bind": "/input", "mode": "ro"}
    assert settings["volumes"]["/data/out"] == {"bind": "/output", "mode": "rw"}
    assert "device_requests" not in settings


def test_gpu_phase_requests_one_gpu_through_the_configured_driver():
    settings = container_settings(
        image_id="x", input_dir=Path("/i"), output_dir=Path("/o"), name="job",
        limits=SandboxLimits(time_limit_s=1, memory_mb=64, cpus=1, gpu=True, gpu_driver="nvidia", runtime="runc"),
    )
    (request,) = settings["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request["Driver"] == "nvidia" and request["Count"] == 1 and request["Capabilities"] == [["gpu"]]
    assert "runtime" not in settings  # runc is Docker's default


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
    assert result.exit_reason == sandbox.OK and result.exit_code == 0
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
    assert result.exit_reason == sandbox.CRASHED and result.exit_code == 1
    assert result.detail == "The container exited with code 1."  # never the container's own words
    assert "ValueError: orientation LPS is not supported" in sandbox.last_output_line(result.log_tail)
    assert "processing case0" in result.log_tail
    assert list(collected.predictions) == ["case0"]
    assert collected.rejected == {
        "case1": "no output file /output/case1.nii.gz",
        "case2": "no output file /output/case2.nii.gz",
    }


@pytest.mark.integration
def test_a_container_past_its_time_limit_is_killed(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "sleep", time_limit_s=3)
    assert result.exit_reason == sandbox.TIMED_OUT
    assert result.duration_s < 30
    assert "3 s" in result.detail
    assert not collected.predictions


@pytest.mark.integration
def test_a_container_over_its_memory_limit_is_reported_as_out_of_memory(probe_image, docker_client, tmp_path):
    result, _ = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "memory", memory_mb=200)
    assert result.exit_reason == sandbox.OUT_OF_MEMORY, (result, result.log_tail)
    assert "200 MB" in result.detail


@pytest.mark.integration
def test_links_special_files_oversized_and_unexpected_outputs_are_refused(probe_image, docker_client, tmp_path):
    result, collected = run_probe(SandboxRunner(docker_client), probe_image, tmp_path, "links")
    assert result.exit_reason == sandbox.OK
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
