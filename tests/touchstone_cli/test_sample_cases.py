"""Organizers publish a phase's public sample cases (what `touchstone validate` runs on) in the Django admin."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from benchmarks.models import SampleCase
from tests.factories import CaseFactory, PhaseFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/benchmarks/samplecase/add/"


def nifti_bytes() -> bytes:
    image = nib.Nifti1Image(np.zeros((8, 8, 4), dtype=np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
    buffer = io.BytesIO()
    file_map = image.make_file_map({"image": buffer, "header": buffer})
    image.to_file_map(file_map)
    return buffer.getvalue()


@pytest.fixture
def phase(settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    phase = PhaseFactory(slug="final")
    phase.cases.add(CaseFactory(benchmark=phase.benchmark, site__benchmark=phase.benchmark, case_id="hidden_001"))
    return phase


def test_an_organizer_publishes_a_sample_case_by_uploading_its_ct(admin_client, phase, tmp_path):
    upload = SimpleUploadedFile("ct.nii", nifti_bytes())
    response = admin_client.post(ADD, {"phase": phase.pk, "case_id": "sample_a", "image_path": "", "image_file": upload})
    assert response.status_code == 302, response.content.decode()[-2000:]
    sample = SampleCase.objects.get()
    assert sample.image_path == "samples/final/sample_a.nii.gz"
    stored = nib.load(tmp_path / sample.image_path)  # gzipped on the way in: containers read .nii.gz
    assert (tmp_path / sample.image_path).read_bytes()[:2] == b"\x1f\x8b" and stored.shape == (8, 8, 4)


def test_a_hidden_case_or_a_file_that_is_no_ct_is_refused(admin_client, phase, tmp_path):
    hidden = admin_client.post(ADD, {"phase": phase.pk, "case_id": "hidden_001", "image_path": "",
                                     "image_file": SimpleUploadedFile("ct.nii", nifti_bytes())})
    assert "is a hidden case of final" in hidden.content.decode()
    (tmp_path / "notes.txt").write_text("not an image")
    junk = admin_client.post(ADD, {"phase": phase.pk, "case_id": "sample_b", "image_path": "notes.txt"})
    assert "Not a usable CT image" in junk.content.decode()
    outside = admin_client.post(ADD, {"phase": phase.pk, "case_id": "sample_c", "image_path": "../../etc/passwd"})
    assert "There is no file ../../etc/passwd under DATA_ROOT" in outside.content.decode()
    assert not SampleCase.objects.exists()
