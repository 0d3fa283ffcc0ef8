"""Creating benchmarks: importing a hidden test set from a manifest, and the default phase."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from benchmarks.models import Benchmark, Case, Organ, Phase, Site


class ManifestError(Exception):
    """The test-set manifest is inconsistent; the message names the entry."""


def _relative_to_data_root(path: Path) -> str:
    root = Path(settings.DATA_ROOT).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ManifestError(f"{resolved} is outside DATA_ROOT ({root}); put the hidden data under DATA_ROOT.")
    return str(resolved.relative_to(root))


@transaction.atomic
def benchmark_import(*, manifest_path: Path, phase_slug: str | None = None, phase_name: str = "Final",
                     phase_options: dict | None = None, benchmark_fields: dict | None = None) -> Phase:
    """Create (or extend) a benchmark from `manifest.json` and a phase holding all of its cases.

    The manifest lists labels (id → organ), sites (code, name, out_of_distribution) and cases
    (case_id, site, image, reference or label, metadata); file paths are relative to the manifest's folder,
    which must lie under DATA_ROOT. Importing the same manifest twice changes nothing.
    """
    manifest = json.loads(manifest_path.read_text())
    folder = manifest_path.parent
    spec = manifest["benchmark"]
    if isinstance(spec, str):  # the synthetic generator names only the slug
        spec = {"slug": spec, "name": spec}
    spec = {**spec, **(benchmark_fields or {})}
    benchmark, _ = Benchmark.objects.update_or_create(
        slug=spec.pop("slug"), defaults={"name": spec["name"], "description": spec.get("description", "")}
    )
    for label, name in sorted((int(k), v) for k, v in manifest["labels"].items()):
        Organ.objects.get_or_create(benchmark=benchmark, label=label, defaults={"name": name})
    sites = {}
    for site in manifest["sites"]:
        sites[site["code"]], _ = Site.objects.update_or_create(
            benchmark=benchmark, code=site["code"],
            defaults={"name": site["name"], "out_of_distribution": bool(site.get("out_of_distribution"))},
        )
    cases = []
    for entry in manifest["cases"]:
        if entry["site"] not in sites:
            raise ManifestError(f"case {entry['case_id']} names site {entry['site']!r}, which the manifest does not list")
        image, reference = folder / entry["image"], folder / entry.get("reference", entry.get("label", ""))
        for path in (image, reference):
            if not path.is_file():
                raise ManifestError(f"case {entry['case_id']}: {path} does not exist")
        case, _ = Case.objects.update_or_create(
            benchmark=benchmark, case_id=entry["case_id"],
            defaults={
                "site": sites[entry["site"]],
                "image_path": _relative_to_data_root(image),
                "reference_path": _relative_to_data_root(reference),
                "metadata": entry.get("metadata", {}),
            },
        )
        cases.append(case)
    phase, _ = Phase.objects.update_or_create(
        slug=phase_slug or f"{benchmark.slug}-{phase_name.lower()}",
        defaults={"benchmark": benchmark, "name": phase_name, **(phase_options or {})},
    )
    phase.cases.add(*cases)
    return phase
