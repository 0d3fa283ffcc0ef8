"""The organs a benchmark scores: label ids, names and NSD tolerances, and reading them from labels.json."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NSD_TOLERANCE_MM = 1.5


@dataclass(frozen=True)
class OrganSpec:
    """One organ of a benchmark's label set.

    `label`: its positive integer id in label maps (0 is background). `name`: e.g. "liver".
    `nsd_tolerance_mm`: the NSD tolerance for this organ in mm, > 0 (default 1.5 mm).
    """

    label: int
    name: str
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM

    def __post_init__(self) -> None:
        if isinstance(self.label, bool) or not isinstance(self.label, int) or self.label < 1:
            raise ValueError(f"organ label must be a positive integer, not {self.label!r}")
        if not self.name:
            raise ValueError(f"organ {self.label} needs a name")
        tolerance = float(self.nsd_tolerance_mm)
        if not math.isfinite(tolerance) or tolerance <= 0:
            raise ValueError(
                f"NSD tolerance of {self.name} must be a positive number of mm, not {self.nsd_tolerance_mm!r}"
            )


TOUCHSTONE_ORGANS: tuple[OrganSpec, ...] = tuple(
    OrganSpec(label, name)
    for label, name in enumerate(
        (
            "aorta",
            "gall_bladder",
            "kidney_left",
            "kidney_right",
            "liver",
            "pancreas",
            "postcava",
            "spleen",
            "stomach",
        ),
        start=1,
    )
)

#: The same organs' names, in label-id order (the statistics' default organ order).
TOUCHSTONE_ORGAN_NAMES: tuple[str, ...] = tuple(organ.name for organ in TOUCHSTONE_ORGANS)


def organs_from_labels(
    labels: Mapping[str, Any], *, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
) -> tuple[OrganSpec, ...]:
    """Organs from a labels.json mapping, sorted by label; label 0 (background) is skipped.

    Values are either a name (`{"1": "aorta"}`, the container contract's labels.json) or an object
    with a name and, optionally, a per-organ tolerance (`{"1": {"name": "aorta", "nsd_tolerance_mm": 2}}`);
    `nsd_tolerance_mm` is used where none is given.

    >>> organs_from_labels({"0": "background", "5": "liver", "2": {"name": "gall_bladder", "nsd_tolerance_mm": 2}})
    (OrganSpec(label=2, name='gall_bladder', nsd_tolerance_mm=2), OrganSpec(label=5, name='liver', nsd_tolerance_mm=1.5))
    """
    organs = []
    for key, value in labels.items():
        try:
            label = int(key)
        except ValueError as error:
            raise ValueError(f"label ids must be integers, not {key!r}") from error
        if label == 0:
            continue
        if isinstance(value, str):
            organs.append(OrganSpec(label, value, nsd_tolerance_mm))
        elif isinstance(value, Mapping) and isinstance(value.get("name"), str):
            organs.append(OrganSpec(label, value["name"], value.get("nsd_tolerance_mm", nsd_tolerance_mm)))
        else:
            raise ValueError(
                f"label {key}: expected a name or {{'name': ..., 'nsd_tolerance_mm': ...}}, not {value!r}"
            )
    if len({organ.label for organ in organs}) != len(organs):
        raise ValueError("labels.json names the same label twice")
    return tuple(sorted(organs, key=lambda organ: organ.label))


def read_labels_json(
    path: Path, *, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
) -> tuple[OrganSpec, ...]:
    """`organs_from_labels` of a labels.json file."""
    with open(path, encoding="utf-8") as handle:
        labels = json.load(handle)
    if not isinstance(labels, Mapping):
        raise ValueError(f"{path}: expected an object mapping label ids to organ names")
    return organs_from_labels(labels, nsd_tolerance_mm=nsd_tolerance_mm)
