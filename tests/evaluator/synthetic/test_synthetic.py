"""The synthetic hidden test set: realistic anatomy in mL, hospitals that really differ, ground truth aligned
to the image through the affine, absent organs, determinism."""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest

from evaluator.synthetic.benchmark import ORGANS, SiteSpec, default_sites, generate_benchmark, generate_case

LABEL = {name: label for label, name in ORGANS.items()}
# Adult reference volumes (mL) with room for the spread between patients.
REALISTIC_ML = {
    "aorta": (50, 300),
    "gall_bladder": (8, 90),
    "kidney_left": (70, 300),
    "kidney_right": (70, 300),
    "liver": (700, 2600),
    "pancreas": (30, 150),
    "postcava": (50, 250),
    "spleen": (80, 450),
    "stomach": (100, 700),
}


@pytest.fixture(scope="module")
def test_cases():
    """Three patients from every default site at the small test size."""
    return [generate_case(site, index, seed=11) for site in default_sites("test") for index in range(3)]


def world_centroid(case, label: int) -> np.ndarray:
    voxels = np.argwhere(case.labels == label)
    return nib.affines.apply_affine(case.affine, voxels.mean(axis=0))


def test_organs_are_the_touchstone_label_set():
    assert ORGANS == {
        1: "aorta",
        2: "gall_bladder",
        3: "kidney_left",
        4: "kidney_right",
        5: "liver",
        6: "pancreas",
        7: "postcava",
        8: "spleen",
        9: "stomach",
    }


def test_organ_volumes_are_realistic_in_ml(test_cases):
    for case in test_cases:
        for organ, volume_ml in case.volumes_ml().items():
            if organ in case.metadata["absent_organs"]:
                assert volume_ml == 0.0, f"{case.case_id}: {organ} should be absent"
                continue
            low, high = REALISTIC_ML[organ]
            assert low <= volume_ml <= high, (
                f"{case.case_id}: {organ} {volume_ml:.0f} mL not in [{low}, {high}]"
            )


def test_volume_is_computed_from_the_voxel_spacing(test_cases):
    case = test_cases[0]
    voxel_ml = np.prod(case.spacing_mm) / 1000.0
    assert case.volume_ml(LABEL["liver"]) == pytest.approx(
        np.count_nonzero(case.labels == LABEL["liver"]) * voxel_ml
    )
    assert case.volumes_ml()["liver"] == pytest.approx(case.volume_ml(LABEL["liver"]), abs=0.01)


def test_same_patient_has_the_same_anatomy_at_every_grid_size():
    site_test, site_demo = default_sites("test")[0], default_sites("demo")[0]
    coarse, fine = (
        generate_case(site_test, 0, seed=5).volumes_ml(),
        generate_case(site_demo, 0, seed=5).volumes_ml(),
    )
    for organ in ("liver", "spleen", "kidney_left", "stomach"):
        assert coarse[organ] == pytest.approx(fine[organ], rel=0.15), organ


def test_a_seed_gives_the_same_bytes():
    site = default_sites("test")[1]
    first, second = generate_case(site, 2, seed=3), generate_case(site, 2, seed=3)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.labels.tobytes() == second.labels.tobytes()
    assert np.array_equal(first.affine, second.affine)
    assert first.metadata == second.metadata


def test_different_seeds_and_indices_give_different_patients():
    site = default_sites("test")[0]
    base = generate_case(site, 0, seed=1)
    for other in (generate_case(site, 0, seed=2), generate_case(site, 1, seed=1)):
        assert not np.array_equal(base.labels, other.labels)
        assert not np.array_equal(base.image, other.image)


def test_images_are_ct_in_hu_and_labels_are_benchmark_ids(test_cases):
    for case in test_cases:
        assert case.image.dtype == np.int16 and case.labels.dtype == np.uint8
        assert case.image.shape == case.labels.shape
        assert set(np.unique(case.labels)) <= {0, *ORGANS}
        assert case.image.min() < -900 and 300 < case.image.max() < 3072  # air outside, bone inside
        liver_hu = np.median(case.image[case.labels == LABEL["liver"]])
        aorta_hu = np.median(case.image[case.labels == LABEL["aorta"]])
        assert 30 < liver_hu < 110 and aorta_hu > liver_hu + 40  # portal venous contrast


def test_sites_differ_in_spacing_orientation_field_of_view_and_intensity():
    sites = {site.code: site for site in default_sites("realistic")}
    assert len(sites) >= 3
    assert len({site.spacing_mm for site in sites.values()}) == len(sites)
    assert len({site.orientation for site in sites.values()}) >= 3
    assert len({site.field_of_view_mm[0] for site in sites.values()}) == len(sites)
    assert max(site.slice_thickness_mm for site in sites.values()) >= 5.0  # a thick-slice site
    assert len({(site.intensity_scale, site.intensity_offset_hu) for site in sites.values()}) >= 3
    assert len({site.noise_hu for site in sites.values()}) == len(sites)
    assert [site.code for site in sites.values() if site.out_of_distribution] == ["HRH"]


def test_intensity_calibration_differs_between_sites(test_cases):
    def fat_hu(case):
        values = case.image[(case.image > -200) & (case.image < -30)]
        counts, edges = np.histogram(values, bins=np.arange(-200, -28, 4))
        return edges[counts.argmax()]

    by_site = {}
    for case in test_cases:
        by_site.setdefault(case.site, []).append(fat_hu(case))
    assert np.mean(by_site["HRH"]) > np.mean(by_site["NGH"]) + 5  # HRH stores HU * 1.06 + 18


@pytest.mark.parametrize("size, in_plane", [("test", 48), ("demo", 128), ("realistic", 512)])
def test_sizes_grid_the_same_sites(size, in_plane):
    sites = default_sites(size)
    assert [site.code for site in sites] == ["NGH", "RVM", "LKC", "HRH"]
    for site in sites:
        assert site.shape[:2] == (in_plane, in_plane)
        assert 300.0 <= site.field_of_view_mm[2] <= 420.0  # the whole abdomen at every size
    if size == "realistic":
        assert all(80 <= site.shape[2] <= 320 for site in sites)


def test_stored_orientation_follows_the_site(test_cases):
    expected = {site.code: site.orientation for site in default_sites("test")}
    for case in test_cases:
        assert "".join(nib.aff2axcodes(case.affine)) == expected[case.site] == case.metadata["orientation"]


def test_anatomy_is_on_the_same_patient_side_in_world_coordinates_at_every_site(test_cases):
    """World coordinates are RAS+: larger x is towards the patient's right, larger y anterior, larger z up."""
    for case in test_cases:
        liver, spleen, aorta, pancreas = (
            world_centroid(case, LABEL[o]) for o in ("liver", "spleen", "aorta", "pancreas")
        )
        assert liver[0] > aorta[0] > spleen[0], case.case_id  # liver on the right, spleen on the left
        assert liver[2] > pancreas[2], case.case_id
        kidneys = {
            o: world_centroid(case, LABEL[o])
            for o in ("kidney_left", "kidney_right")
            if o not in case.metadata["absent_organs"]
        }
        if len(kidneys) == 2:
            assert kidneys["kidney_right"][0] > kidneys["kidney_left"][0], case.case_id
        for kidney in kidneys.values():
            assert pancreas[1] > kidney[1], case.case_id  # retroperitoneal kidneys lie behind the pancreas


def test_the_flipped_site_stores_slices_head_to_feet_with_the_anatomy_unchanged():
    ngh, hrh = default_sites("test")[0], default_sites("test")[3]
    flipped = generate_case(hrh, 0, seed=2)
    assert flipped.affine[2, 2] < 0 and "".join(nib.aff2axcodes(flipped.affine)) == "LPI"
    liver_z = [world_centroid(flipped, LABEL["liver"])[2], world_centroid(flipped, LABEL["kidney_left"])[2]]
    assert liver_z[0] > liver_z[1]  # liver above the kidneys in the world, whatever the storage order
    first_slice, last_slice = flipped.labels[:, :, 0], flipped.labels[:, :, -1]
    # Slice 0 is the top of the scan: lungs and liver dome, not the pelvis.
    assert (first_slice == LABEL["liver"]).sum() >= (last_slice == LABEL["liver"]).sum()
    assert generate_case(ngh, 0, seed=2).affine[2, 2] > 0


def test_some_cases_miss_an_organ_and_say_why(test_cases):
    absent = {
        case.case_id: case.metadata["absent_organs"] for case in test_cases if case.metadata["absent_organs"]
    }
    assert any("gall_bladder" in organs for organs in absent.values())
    assert any({"kidney_left", "kidney_right"} & set(organs) for organs in absent.values())
    for case in test_cases:
        for organ in case.metadata["absent_organs"]:
            assert not (case.labels == LABEL[organ]).any()
        if "gall_bladder" in case.metadata["absent_organs"]:
            assert "cholecystectomy" in case.metadata["history"]


def test_cases_carry_scanner_and_patient_metadata(test_cases):
    for case in test_cases:
        meta = case.metadata
        assert meta["site"] == case.site
        assert meta["sex"] in {"F", "M"} and 18 <= meta["age"] <= 95
        assert meta["manufacturer"] and meta["scanner_model"] and meta["kvp"] in {80, 100, 120, 140}
        assert meta["spacing_mm"] == pytest.approx(list(case.spacing_mm))
        assert isinstance(meta["out_of_distribution"], bool)
    assert len({case.metadata["manufacturer"] for case in test_cases}) >= 3


def test_orientation_must_be_axial_axis_codes():
    with pytest.raises(ValueError, match="orientation"):
        SiteSpec(code="BAD", name="Bad", shape=(8, 8, 8), spacing_mm=(1.0, 1.0, 1.0), orientation="SAR")


def test_benchmark_files_align_image_and_ground_truth(tmp_path):
    entries = generate_benchmark(tmp_path, cases_per_site=1, size="test", seed=4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cases"] == json.loads(json.dumps(entries))
    assert json.loads((tmp_path / "labels.json").read_text()) == {str(k): v for k, v in ORGANS.items()}
    assert [site["code"] for site in manifest["sites"]] == ["NGH", "RVM", "LKC", "HRH"]
    for entry in entries:
        image, labels = nib.load(tmp_path / entry["image"]), nib.load(tmp_path / entry["label"])
        assert image.shape == labels.shape
        assert np.allclose(image.affine, labels.affine)
        assert image.get_data_dtype() == np.int16 and labels.get_data_dtype() == np.uint8
        case = generate_case(next(s for s in default_sites("test") if s.code == entry["site"]), 0, seed=4)
        assert np.array_equal(np.asanyarray(labels.dataobj), case.labels)
        assert np.allclose(image.affine, case.affine)
        assert entry["volumes_ml"]["liver"] == pytest.approx(case.volume_ml(LABEL["liver"]), abs=0.01)


def test_writing_a_benchmark_twice_gives_identical_files(tmp_path):
    generate_benchmark(tmp_path / "a", cases_per_site=1, size="test", seed=9)
    generate_benchmark(tmp_path / "b", cases_per_site=1, size="test", seed=9)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 * 2 + 2
    for path in files:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


def test_test_size_is_fast():
    started = time.perf_counter()
    for site in default_sites("test")[:3]:
        for index in range(3):
            generate_case(site, index, seed=0)
    assert time.perf_counter() - started < 10.0
