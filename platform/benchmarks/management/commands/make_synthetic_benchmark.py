"""`manage.py make_synthetic_benchmark`: generate the synthetic 9-organ multi-site test set and import it."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from benchmarks import services
from evaluator.synthetic import benchmark as synthetic


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
        self.stdout.write(f"Phase '{imported.slug}': {imported.cases.count()} cases from "
                          f"{imported.benchmark.sites.count()} sites.")
