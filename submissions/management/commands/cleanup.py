"""`manage.py cleanup`: remove what no live job needs (old Docker images, stale uploads, raw job outputs)."""

from django.core.management.base import BaseCommand

from submissions import retention


class Command(BaseCommand):
    help = (
        "Remove Docker images of failed, cancelled and superseded submissions, stale upload tars and .part "
        "files, and raw job outputs, each past its retention setting (TOUCHSTONE_RETENTION_*). Run on each "
        "inference host: images are removed from this host's Docker engine."
    )

    def handle(self, *args, **options):
        removed = retention.cleanup()
        for what, count in removed.items():
            self.stdout.write(f"{what.replace('_', ' ')}: {count} removed")
