"""`manage.py import_benchmark MANIFEST`: import a hidden test set (checked first, all or nothing)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from benchmarks import services


class Command(BaseCommand):
    help = (
        "Import a hidden test set from its manifest.json (under DATA_ROOT) and create or extend a phase with "
        "all of its cases. The manifest and every case's files are checked before anything is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("manifest", type=Path, help="manifest.json; case paths are relative to its folder")
        parser.add_argument("--phase", default=None, help="phase slug (default: <benchmark>-<phase name>)")
        parser.add_argument("--phase-name", default="Final")
        parser.add_argument("--time-limit-per-case-s", type=int)
        parser.add_argument("--shard-size", type=int)
        parser.add_argument("--canary-size", type=int)
        parser.add_argument("--memory-mb", type=int)
        parser.add_argument("--cpus", type=float)
        parser.add_argument("--gpu", action="store_true", default=None, help="give containers a GPU")
        parser.add_argument("--submissions-per-day", type=int)
        parser.add_argument("--show-logs", action="store_true", default=None, help="teams see container logs")
        parser.add_argument("--skip-file-checks", action="store_true",
                            help="do not open every image and reference header (faster for huge sets)")

    def handle(self, *args, manifest, phase, phase_name, skip_file_checks, **options):
        keys = ("time_limit_per_case_s", "shard_size", "canary_size", "memory_mb", "cpus", "gpu",
                "submissions_per_day", "show_logs")
        try:
            imported = services.benchmark_import(
                manifest_path=manifest.resolve(),
                phase_slug=phase,
                phase_name=phase_name,
                phase_options={key: options[key] for key in keys if options.get(key) is not None},
                check_files=not skip_file_checks,
            )
        except services.ManifestError as error:
            raise CommandError(f"Nothing was imported. {error}") from None
        benchmark = imported.benchmark
        sites = ", ".join(
            f"{site.code}{' (OOD)' if site.out_of_distribution else ''}: {site.cases.count()}"
            for site in benchmark.sites.order_by("code")
        )
        self.stdout.write(
            f"Benchmark '{benchmark.slug}': {benchmark.organs.count()} organs; cases per site {sites}.\n"
            f"Phase '{imported.slug}' holds {imported.cases.count()} cases. Teams submit with "
            f"`touchstone submit IMAGE --phase {imported.slug}`."
        )
