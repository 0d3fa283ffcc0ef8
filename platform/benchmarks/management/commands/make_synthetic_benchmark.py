"""`manage.py make_synthetic_benchmark`: generate the synthetic 9-organ multi-site test set and import it,
and publish a few extra synthetic cases (never in the hidden set) as the phase's public sample cases."""

from pathlib import Path

import nibabel as nib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from benchmarks import services
from benchmarks.models import Phase, SampleCase
from evaluator.synthetic import benchmark as synthetic

# Patients drawn at these indices are never part of a hidden set (which uses 0 .. cases_per_site-1).
SAMPLE_INDEX_BASE = 900
# The reference site first, then the out-of-distribution one (stored head to feet): an algorithm that
# handles only the common orientation fails `touchstone validate` on the second.
SAMPLE_SITE_ORDER = ("NGH", "HRH", "RVM", "LKC")


class Command(BaseCommand):
    help = "Generate a deterministic synthetic Touchstone-like hidden test set under DATA_ROOT and import it."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="touchstone-synthetic")
        parser.add_argument("--size", choices=["test", "demo", "realistic"], default="demo")
        parser.add_argument("--cases-per-site", type=int, default=4)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--phase", default=None, help="phase slug (default: <slug>-final)")
        parser.add_argument("--time-limit-per-case-s", type=int, default=120)
        parser.add_argument("--shard-size", type=int, default=4)
        parser.add_argument("--canary-size", type=int, default=2)
        parser.add_argument("--memory-mb", type=int, default=4096)
        parser.add_argument("--cpus", type=float, default=1.0)
        parser.add_argument("--submissions-per-day", type=int, default=10)
        parser.add_argument("--show-logs", action="store_true")
        parser.add_argument("--sample-cases", type=int, default=2,
                            help="public sample cases to publish for `touchstone validate` (0: none)")

    def handle(self, *args, slug, size, cases_per_site, seed, phase, **options):
        folder = Path(settings.DATA_ROOT) / "benchmarks" / slug
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            self.stdout.write(f"Generating {cases_per_site} {size}-size cases per site into {folder} ...")
            synthetic.generate_benchmark(folder, cases_per_site=cases_per_site, size=size, seed=seed)
        imported = services.benchmark_import(
            manifest_path=manifest_path,
            phase_slug=phase,
            benchmark_fields={
                "slug": slug,
                "name": "Touchstone synthetic abdominal CT",
                "description": "Synthetic CT-like scans from hospitals that differ in spacing, orientation, "
                "intensity and field of view; the 9 abdominal organs of Touchstone.",
            },
            phase_options={
                "time_limit_per_case_s": options["time_limit_per_case_s"],
                "shard_size": options["shard_size"],
                "canary_size": options["canary_size"],
                "memory_mb": options["memory_mb"],
                "cpus": options["cpus"],
                "submissions_per_day": options["submissions_per_day"],
                "show_logs": options["show_logs"],
            },
        )
        samples = publish_sample_cases(phase=imported, folder=folder, size=size, seed=seed,
                                       count=options["sample_cases"])
        self.stdout.write(f"Phase '{imported.slug}': {imported.cases.count()} cases from "
                          f"{imported.benchmark.sites.count()} sites; public sample cases: "
                          f"{', '.join(sample.case_id for sample in samples) or 'none'}.")


def publish_sample_cases(*, phase: Phase, folder: Path, size: str, seed: int, count: int) -> list[SampleCase]:
    """Write `count` extra synthetic cases (image and reference) under `folder`/samples and publish their
    images as the phase's sample cases. Only the image is served; the reference stays for organizers."""
    if count < 0 or count > len(SAMPLE_SITE_ORDER):
        raise CommandError(f"--sample-cases must be 0 to {len(SAMPLE_SITE_ORDER)}, not {count}.")
    sites = {site.code: site for site in synthetic.default_sites(size)}  # type: ignore[arg-type]
    root = Path(settings.DATA_ROOT).resolve()
    published = []
    for number, code in enumerate(SAMPLE_SITE_ORDER[:count]):
        case_id = f"sample_{number + 1}_{code.lower()}"  # numbered first: cases.json order
        image_path = folder / "samples" / "images" / f"{case_id}.nii.gz"
        reference_path = folder / "samples" / "labels" / f"{case_id}.nii.gz"
        if not (image_path.exists() and reference_path.exists()):
            case = synthetic.generate_case(sites[code], SAMPLE_INDEX_BASE + number, seed)
            image_path.parent.mkdir(parents=True, exist_ok=True)
            reference_path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(case.labels_nifti(), reference_path)
            nib.save(case.image_nifti(), image_path)
        sample, _ = SampleCase.objects.update_or_create(
            phase=phase, case_id=case_id,
            defaults={"image_path": str(image_path.resolve().relative_to(root))},
        )
        published.append(sample)
    return published
