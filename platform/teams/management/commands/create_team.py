"""`manage.py create_team NAME`: create a team (if needed) and print a new API token for its CLI."""

from django.core.management.base import BaseCommand

from teams import services


class Command(BaseCommand):
    help = "Create a team if it does not exist and issue it an API token (printed once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--slug")
        parser.add_argument("--token-name", default="cli")
        parser.add_argument("--quiet", action="store_true", help="Print only the token.")

    def handle(self, *args, name, slug, token_name, quiet, **options):
        team = services.team_create(name=name, slug=slug)
        key = services.token_issue(team=team, name=token_name)
        if quiet:
            self.stdout.write(key)
        else:
            self.stdout.write(f"Team '{team.slug}'. API token (shown once, store it now):\n{key}")
