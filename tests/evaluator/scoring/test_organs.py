"""Organ specifications and labels.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.scoring.organs import TOUCHSTONE_ORGANS, OrganSpec, organs_from_labels, read_labels_json


def test_touchstone_organs_follow_the_design() -> None:
    assert [(organ.label, organ.name) for organ in TOUCHSTONE_ORGANS][:3] == [
        (1, "aorta"),
        (2, "gall_bladder"),
        (3, "kidney_left"),
    ]
    assert len(TOUCHSTONE_ORGANS) == 9 and all(organ.nsd_tolerance_mm == 1.5 for organ in TOUCHSTONE_ORGANS)


def test_labels_json_of_the_container_contract(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"0": "background", "9": "stomach", "1": "aorta"}))
    assert read_labels_json(path, nsd_tolerance_mm=2.0) == (
        OrganSpec(1, "aorta", 2.0),
        OrganSpec(9, "stomach", 2.0),
    )


def test_labels_json_with_per_organ_tolerances() -> None:
    organs = organs_from_labels({"5": {"name": "liver", "nsd_tolerance_mm": 3}, "6": {"name": "pancreas"}})
    assert organs == (OrganSpec(5, "liver", 3), OrganSpec(6, "pancreas", 1.5))


@pytest.mark.parametrize(
    "labels",
    [
        {"x": "liver"},
        {"1": 5},
        {"1": {"nsd_tolerance_mm": 1}},
        {"1": "a", "01": "b"},
        {"-1": "a"},
        {"1": {"name": "a", "nsd_tolerance_mm": 0}},
    ],
)
def test_bad_labels_json_is_refused(labels: dict) -> None:
    with pytest.raises(ValueError):
        organs_from_labels(labels)


@pytest.mark.parametrize(
    ("label", "name", "tolerance"),
    [(0, "x", 1.0), (True, "x", 1.0), (1, "", 1.0), (1, "x", -1.0), (1, "x", float("nan"))],
)
def test_organ_spec_validates(label: object, name: str, tolerance: float) -> None:
    with pytest.raises(ValueError):
        OrganSpec(label, name, tolerance)  # type: ignore[arg-type]
