"""Organizers import a hidden test set: everything is checked first, every problem is named, nothing half-done."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from benchmarks.models import Benchmark, Case, Organ
from evaluator.synthetic.benchmark import generate_benchmark

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hidden") / "abdomen"
    generate_benchmark(folder, cases_per_site=1, size="test", seed=5)
    return folder


@pytest.fixture
def test_set(settings, tmp_path, generated) -> Path:
    settings.DATA_ROOT = tmp_path
    folder = tmp_path / "abdomen"
    shutil.copytree(generated, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["benchmark"] = {"slug": "abdomen", "name": "Abdominal CT", "nsd_tolerance_mm": 2.0,
                             "p_value_method": "normal"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "manifest.json"


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_benchmark", *args, stdout=out)
    return out.getvalue()


def test_a_test_set_imports_with_its_settings_and_again_changes_nothing(test_set):
    output = run(str(test_set), "--phase", "abdomen-final", "--time-limit-per-case-s", "600", "--gpu")
    benchmark = Benchmark.objects.get(slug="abdomen")
    assert (benchmark.nsd_tolerance_mm, benchmark.p_value_method) == (2.0, "normal")
    phase = benchmark.phases.get()
    assert (phase.slug, phase.time_limit_per_case_s, phase.gpu) == ("abdomen-final", 600, True)
    assert phase.cases.count() == Case.objects.count() == 4 and Organ.objects.count() == 9
    assert "Phase 'abdomen-final' holds 4 cases" in output and "HRH (OOD): 1" in output
    run(str(test_set), "--phase", "abdomen-final")
    assert (Case.objects.count(), Organ.objects.count(), benchmark.phases.count()) == (4, 9, 1)


def test_every_problem_is_named_and_nothing_is_written(test_set):
    folder = test_set.parent
    manifest = json.loads(test_set.read_text())
    manifest["labels"]["0"] = "background"
    manifest["benchmark"]["colour"] = "blue"
    first, second, third, fourth = manifest["cases"]
    second["site"] = "XYZ"
    third["case_id"] = first["case_id"]
    (folder / fourth["image"]).unlink()
    shutil.copyfile(folder / first["image"], folder / second["label"])  # another case's grid: wrong shape
    test_set.write_text(json.dumps(manifest))

    with pytest.raises(CommandError) as raised:
        run(str(test_set))
    message = str(raised.value)
    assert message.startswith("Nothing was imported.")
    for expected in (
        "label id '0' is not a whole number from 1 to 255",
        "unknown settings ['colour']",
        f"case {second['case_id']} names site 'XYZ'",
        f"case {first['case_id']} is listed twice",
        f"case {fourth['case_id']}: image {folder / fourth['image']} does not exist",
        f"case {second['case_id']}: the image has shape",
    ):
        assert expected in message
    assert Benchmark.objects.count() == Case.objects.count() == 0


def _with_affine(path: Path, change) -> None:
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), change(image.affine), image.header), path)


def test_image_and_reference_must_share_the_voxel_grid_the_scorer_accepts(test_set):
    """The scorer's rule: every corner voxel within 1e-3 mm. Rounding passes; a shifted origin does not."""
    folder = test_set.parent
    first, second = json.loads(test_set.read_text())["cases"][:2]
    _with_affine(folder / first["image"], lambda affine: affine + _shift(2e-4))
    _with_affine(folder / second["image"], lambda affine: affine + _shift(0.5))
    with pytest.raises(CommandError) as raised:
        run(str(test_set))
    message = str(raised.value)
    assert f"case {second['case_id']}: the image's origin is shifted by (0.5, 0, 0) mm" in message
    assert f"case {first['case_id']}" not in message


def _shift(mm: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[0, 3] = mm
    return shift


def test_unreadable_manifest_and_files_outside_data_root_are_clear_errors(test_set, settings, tmp_path_factory):
    bad = test_set.parent / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="is not valid JSON"):
        run(str(bad))
    settings.DATA_ROOT = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(CommandError, match="is outside DATA_ROOT"):
        run(str(test_set))


def test_a_label_set_cannot_change_under_stored_results(test_set):
    run(str(test_set))
    manifest = json.loads(test_set.read_text())
    manifest["labels"]["1"] = "heart"
    test_set.write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="label 1 is 'heart' in the manifest but 'aorta'"):
        run(str(test_set))
    assert Organ.objects.filter(name="heart").count() == 0


def test_a_benchmark_setting_out_of_range_is_named(test_set):
    manifest = json.loads(test_set.read_text())
    manifest["benchmark"].update(p_value_method="magic", bootstrap_samples=5)
    test_set.write_text(json.dumps(manifest))
    with pytest.raises(CommandError) as raised:
        run(str(test_set))
    assert "p_value_method: Value 'magic' is not a valid choice." in str(raised.value)
    assert "bootstrap_samples: Ensure this value is greater than or equal to 100." in str(raised.value)
    assert Benchmark.objects.count() == 0
