"""Creating benchmarks: importing a hidden test set from a manifest, and the default phase."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from benchmarks.models import Benchmark, Case, Organ, Phase, Site
from evaluator.scoring.loading import Geometry, LoadError, read_geometry, voxel_grid_mismatch

logger = logging.getLogger(__name__)


class ManifestError(Exception):
    """The test-set manifest is inconsistent; the message names the entry."""


def _relative_to_data_root(path: Path) -> str:
    root = Path(settings.DATA_ROOT).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ManifestError(f"{resolved} is outside DATA_ROOT ({root}); put the hidden data under DATA_ROOT.")
    return str(resolved.relative_to(root))


# Benchmark settings a manifest may carry besides slug, name and description.
BENCHMARK_SETTINGS = (
    "nsd_tolerance_mm", "nsd_definition", "bootstrap_samples", "bootstrap_seed", "ci_method", "p_value_method",
    "rank_method",
)
MAX_REPORTED_PROBLEMS = 20


def manifest_load(manifest_path: Path, *, check_files: bool = True) -> dict:
    """Read and check a test-set manifest; ManifestError lists every problem found (up to 20), by entry."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{manifest_path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{manifest_path} is not valid JSON: {error}.") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{manifest_path} must hold a JSON object with benchmark, labels, sites and cases.")
    problems = [f"the manifest has no '{key}'" for key in ("benchmark", "labels", "sites", "cases") if key not in manifest]
    if problems:
        raise ManifestError("; ".join(problems) + ".")
    problems += _benchmark_problems(manifest["benchmark"])
    labels = manifest["labels"]
    if not isinstance(labels, dict) or not labels:
        problems.append("'labels' must map label ids to organ names, e.g. {\"1\": \"liver\"}")
        labels = {}
    for key, name in labels.items():
        if not str(key).isdigit() or not 1 <= int(key) <= 255:
            problems.append(f"label id {key!r} is not a whole number from 1 to 255 (0 is background)")
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            problems.append(f"label {key}: organ name {name!r} must be letters, digits and underscores")
    names = [name for name in labels.values() if isinstance(name, str)]
    problems += [f"organ name {name!r} is used by two labels" for name in sorted({n for n in names if names.count(n) > 1})]
    site_codes = []
    for index, site in enumerate(manifest["sites"] if isinstance(manifest["sites"], list) else []):
        if not isinstance(site, dict) or not site.get("code") or not site.get("name"):
            problems.append(f"site #{index + 1} needs a 'code' and a 'name'")
            continue
        if site["code"] in site_codes:
            problems.append(f"site code {site['code']!r} is listed twice")
        site_codes.append(site["code"])
    if not site_codes:
        problems.append("'sites' must list at least one site with a code and a name")
    folder = manifest_path.parent
    seen: set[str] = set()
    cases = manifest["cases"] if isinstance(manifest["cases"], list) else []
    if not cases:
        problems.append("'cases' must list at least one case")
    for index, entry in enumerate(cases):
        if not isinstance(entry, dict) or not entry.get("case_id"):
            problems.append(f"case #{index + 1} has no case_id")
            continue
        case_id = str(entry["case_id"])
        if case_id in seen:
            problems.append(f"case {case_id} is listed twice")
        seen.add(case_id)
        if entry.get("site") not in site_codes:
            problems.append(f"case {case_id} names site {entry.get('site')!r}, which the manifest does not list")
        if not isinstance(entry.get("metadata", {}), dict):
            problems.append(f"case {case_id}: 'metadata' must be an object")
        reference = entry.get("reference", entry.get("label"))
        if not entry.get("image") or not reference:
            problems.append(f"case {case_id} needs an 'image' and a 'reference' (or 'label') path")
        elif check_files:
            problems += _case_file_problems(case_id, folder / entry["image"], folder / reference)
        if len(problems) > MAX_REPORTED_PROBLEMS:
            break
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = " (and more; fix these first)" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        raise ManifestError(
            f"{manifest_path} has {len(shown)} problem(s){more}:\n" + "\n".join(f"  - {p}" for p in shown)
        )
    return manifest


def _benchmark_problems(spec) -> list[str]:
    if isinstance(spec, str):
        return [] if spec else ["'benchmark' must name a slug"]
    if not isinstance(spec, dict) or not spec.get("slug"):
        return ["'benchmark' must be a slug or an object with 'slug' and 'name'"]
    unknown = set(spec) - {"slug", "name", "description", *BENCHMARK_SETTINGS}
    if unknown:
        return [f"'benchmark' has unknown settings {sorted(unknown)}; known: {list(BENCHMARK_SETTINGS)}"]
    return []


def _case_file_problems(case_id: str, image: Path, reference: Path) -> list[str]:
    """Both files exist under DATA_ROOT and are 3-D NIfTI volumes on one voxel grid (headers only).

    The headers are read and compared by the evaluator's own rules (`read_geometry`,
    `voxel_grid_mismatch`), so a case imported here is one the scorer accepts as its own input.
    """
    problems = []
    geometries: dict[str, Geometry] = {}
    for what, path in (("image", image), ("reference", reference)):
        if not path.is_file():
            problems.append(f"case {case_id}: {what} {path} does not exist")
            continue
        try:
            _relative_to_data_root(path)
            geometries[what] = read_geometry(path, role=what)
        except ManifestError as error:
            problems.append(f"case {case_id}: {error}")
        except LoadError as error:
            problems.append(f"case {case_id}: {what} {path.name} is not a usable NIfTI volume ({error})")
    if len(geometries) == 2:
        image_geometry = geometries["image"]
        mismatch = voxel_grid_mismatch(
            image_geometry.shape, image_geometry.affine, geometries["reference"],
            what="the image", expected_name="the reference",
        )
        if mismatch is not None:
            problems.append(f"case {case_id}: {mismatch.message} (not the same voxel grid)")
    return problems


@transaction.atomic
def benchmark_import(*, manifest_path: Path, phase_slug: str | None = None, phase_name: str = "Final",
                     phase_options: dict | None = None, benchmark_fields: dict | None = None,
                     check_files: bool = True) -> Phase:
    """Create (or extend) a benchmark from `manifest.json` and a phase holding all of its cases.

    The manifest lists the benchmark (a slug, or an object with slug, name, description and settings),
    labels (id → organ), sites (code, name, out_of_distribution) and cases (case_id, site, image,
    reference or label, metadata); file paths are relative to the manifest's folder, which must lie under
    DATA_ROOT. Everything is checked before anything is written. Importing the same manifest twice
    changes nothing.
    """
    manifest = manifest_load(manifest_path, check_files=check_files)
    folder = manifest_path.parent
    spec = manifest["benchmark"]
    if isinstance(spec, str):  # the synthetic generator names only the slug
        spec = {"slug": spec, "name": spec}
    spec = {**spec, **(benchmark_fields or {})}
    slug = spec.pop("slug")
    values = {
        "name": spec.get("name") or slug,
        "description": spec.get("description", ""),
        **{key: spec[key] for key in BENCHMARK_SETTINGS if key in spec},
    }
    try:
        Benchmark(slug=slug, **values).full_clean(validate_unique=False)
    except ValidationError as error:
        problems = "; ".join(f"{key}: {' '.join(messages)}" for key, messages in error.message_dict.items())
        raise ManifestError(f"benchmark settings: {problems}") from None
    benchmark, _ = Benchmark.objects.update_or_create(slug=slug, defaults=values)
    for label, name in sorted((int(k), v) for k, v in manifest["labels"].items()):
        organ, _ = Organ.objects.get_or_create(benchmark=benchmark, label=label, defaults={"name": name})
        if organ.name != name:
            raise ManifestError(
                f"label {label} is {name!r} in the manifest but {organ.name!r} in benchmark {benchmark.slug}; "
                "a label set cannot change under stored results: import it as a new benchmark"
            )
    sites = {}
    for site in manifest["sites"]:
        sites[site["code"]], _ = Site.objects.update_or_create(
            benchmark=benchmark, code=site["code"],
            defaults={"name": site["name"], "out_of_distribution": bool(site.get("out_of_distribution"))},
        )
    cases = []
    for entry in manifest["cases"]:
        image, reference = folder / entry["image"], folder / entry.get("reference", entry.get("label", ""))
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
    case_pks = [case.pk for case in cases]
    transaction.on_commit(lambda: reference_caches_enqueue(case_pks=case_pks))
    return phase


def reference_cache_root() -> Path:
    """Where the scorer's reference cache lives (`evaluator.scoring.reference_cache`): under DATA_ROOT."""
    return Path(settings.DATA_ROOT) / "reference-cache"


def reference_caches_enqueue(*, case_pks: list[int]) -> None:
    """Ask the scoring workers to build the reference cache of these cases (idempotent, one task each)."""
    from benchmarks import tasks  # tasks import this module

    for case_pk in case_pks:
        tasks.build_reference_cache.delay(case_pk=case_pk)


def case_reference_cache_build(*, case_pk: int) -> Path | None:
    """Build (or find) the reference cache entry of a case; None when the case no longer exists or its
    reference cannot be read (logged: scoring then reads the file itself and reports the problem)."""
    from evaluator.scoring import reference_cache

    case = Case.objects.select_related("benchmark").filter(pk=case_pk).first()
    if case is None:
        return None
    reference = Path(settings.DATA_ROOT) / case.reference_path
    try:
        return reference_cache.build(reference_cache_root(), case.benchmark.slug, case.case_id, reference)
    except (LoadError, OSError) as error:
        logger.error("reference cache of case %s (%s) not built: %s", case.case_id, case.benchmark.slug, error)
        return None
