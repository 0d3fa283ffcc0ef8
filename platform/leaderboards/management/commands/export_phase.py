"""`manage.py export_phase PHASE DIRECTORY`: the phase's export files (as the dashboard's zip holds them)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from benchmarks.models import Phase
from leaderboards import exports
from leaderboards.visibility import ANONYMOUS, STAFF


class Command(BaseCommand):
    help = "Write a phase's leaderboard, statistics snapshot, per-case scores and figures to a directory."

    def add_arguments(self, parser):
        parser.add_argument("phase", help="the phase's slug")
        parser.add_argument("directory", type=Path)
        parser.add_argument(
            "--public", action="store_true",
            help="only what an anonymous visitor may see (the published board), as for a public archive",
        )

    def handle(self, *args, phase: str, directory: Path, public: bool, **options):
        try:
            found = Phase.objects.select_related("benchmark").get(slug=phase)
        except Phase.DoesNotExist:
            known = ", ".join(Phase.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"No phase '{phase}'. Known phases: {known}.") from None
        try:
            files = exports.phase_export(phase=found, viewer=ANONYMOUS if public else STAFF)
        except exports.ExportRefused as refusal:
            raise CommandError(str(refusal)) from None
        for name, data in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.stdout.write(f"Wrote {len(files)} files to {directory}.")
