"""Creating teams and issuing their API tokens."""

from django.db import transaction
from django.utils.text import slugify

from teams.models import ApiToken, Team


@transaction.atomic
def team_create(*, name: str, slug: str | None = None) -> Team:
    team, _ = Team.objects.get_or_create(slug=slug or slugify(name), defaults={"name": name})
    return team


def token_issue(*, team: Team, name: str = "cli") -> str:
    """Create a token and return its secret, which is shown once and stored only as a hash."""
    key = ApiToken.new_key()
    ApiToken.objects.create(team=team, name=name, key_hash=ApiToken.hash_key(key))
    return key
