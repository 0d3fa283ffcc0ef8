"""`touchstone validate` against the live API and the real Docker engine: the phase's sample cases are run in
the workers' sandbox and every output is checked with the scorer's own rules.

Personas: alice validates the baseline (accepted), the fragile algorithm (fails on the out-of-distribution
sample, stored head to feet) and a careless rebuild of the baseline that writes the wrong shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from teams import services as team_services
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PHASE = "validate-synthetic-final"


@pytest.fixture
def alice(settings, tmp_path, live_server) -> dict:
    settings.DATA_ROOT = tmp_path / "data"
    settings.DATA_ROOT.mkdir()
    call_command("make_synthetic_benchmark", slug="validate-synthetic", size="test", cases_per_site=1, seed=3,
                 time_limit_per_case_s=30, memory_mb=1024, stdout=open(os.devnull, "w"))
    token = team_services.token_issue(team=team_services.team_create(name="Alice Lab"))
    return {"server": live_server.url, "token": token, "home": tmp_path}


def validate(alice: dict, image: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOUCHSTONE_SERVER": alice["server"], "TOUCHSTONE_TOKEN": alice["token"],
           "TOUCHSTONE_CONFIG": str(alice["home"] / "config.json")}
    return subprocess.run([sys.executable, "-m", "touchstone_cli.main", "validate", image, "--phase", PHASE, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_baseline_passes_every_sample_case(alice, algorithm_images):
    done = validate(alice, algorithm_images["baseline"], "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)  # --json: the report alone on stdout
    assert report["accepted"] is True and report["exit_reason"] == "ok" and report["runtime"] == "runsc"
    assert [case["case_id"] for case in report["cases"]] == ["sample_1_ngh", "sample_2_hrh"]
    assert all(case["accepted"] for case in report["cases"])


def test_the_fragile_algorithm_names_the_failing_case_and_why(alice, algorithm_images):
    done = validate(alice, algorithm_images["fragile"])
    assert done.returncode == 1, done.stderr + done.stdout
    text = done.stdout
    assert "Crashed (non-zero exit)" in text
    assert "unsupported orientation LPI in sample_2_hrh" in text  # its own last words name the case
    assert "sample_1_ngh: accepted" in text
    assert "sample_2_hrh: REFUSED (missing_output)" in text and "Change: Write /output/<case_id>.nii.gz" in text
    assert "would NOT accept every case" in text


@pytest.fixture
def wrong_shape_image(docker_client, algorithm_images, tmp_path):
    """The baseline rebuilt with a step that saves a downsampled label map (half the input's shape)."""
    context = tmp_path / "wrong-shape"
    context.mkdir()
    (context / "halve.py").write_text(textwrap.dedent("""
        import json, pathlib
        import nibabel as nib, numpy as np
        cases = json.loads(pathlib.Path("/input/cases.json").read_text())["cases"]
        for case in cases:
            image = nib.load("/input/" + case["image"])
            labels = np.zeros([n // 2 for n in image.shape], dtype=np.uint8)
            nib.save(nib.Nifti1Image(labels, image.affine), "/output/%s.nii.gz" % case["case_id"])
    """))
    (context / "Dockerfile").write_text(
        f"FROM {algorithm_images['baseline']}\nCOPY halve.py /opt/algorithm/halve.py\n"
        'ENTRYPOINT ["python3", "/opt/algorithm/halve.py"]\n'
    )
    tag = f"touchstone-test/wrong-shape-{uuid.uuid4().hex[:8]}:latest"
    docker_client.images.build(path=str(context), tag=tag, rm=True, network_mode="none")
    yield tag
    docker_client.images.remove(tag, force=True)


def test_an_image_breaking_the_shape_rule_fails_with_the_rule_named(alice, wrong_shape_image):
    done = validate(alice, wrong_shape_image, "--json")
    assert done.returncode == 1, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["accepted"] is False and report["exit_reason"] == "ok"
    assert {case["rule"] for case in report["cases"]} == {"wrong_shape"}
    assert all("Shape differs from the input" in case["problem"] and "resample back" in case["advice"]
               for case in report["cases"])


def test_an_unknown_image_and_a_phase_without_samples_say_what_to_do(alice):
    missing = validate(alice, "touchstone-test/never-built:latest")
    assert missing.returncode == 2 and "Build it first" in missing.stderr and missing.stdout == ""
    from benchmarks.models import SampleCase

    SampleCase.objects.all().delete()
    empty = validate(alice, "touchstone-test/never-built:latest", "--json")
    assert empty.returncode == 2 and "no sample cases" in empty.stderr
    assert json.loads(empty.stdout) == {"error": json.loads(empty.stdout)["error"]}


def test_sample_cases_are_public_extra_cases_never_in_the_hidden_set(alice):
    from benchmarks.models import Phase

    phase = Phase.objects.get(slug=PHASE)
    samples = list(phase.sample_cases.all())
    hidden = set(phase.cases.values_list("case_id", flat=True))
    assert len(samples) == 2 and not hidden & {sample.case_id for sample in samples}
    folder = Path(alice["home"] / "data" / "benchmarks" / "validate-synthetic" / "samples")
    for sample in samples:
        assert (alice["home"] / "data" / sample.image_path) == folder / "images" / f"{sample.case_id}.nii.gz"
        assert (folder / "labels" / f"{sample.case_id}.nii.gz").is_file()  # the reference, for organizers only
