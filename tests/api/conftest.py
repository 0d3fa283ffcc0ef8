"""Personas for the API tests: alice's team (read+submit, read-only, revoked and expired tokens), bob's rival team."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from teams import services as team_services
from teams.models import ApiToken, Team
from tests.factories import PhaseFactory, TeamFactory


@dataclass
class Persona:
    team: Team
    submit: dict
    read: dict
    revoked: dict
    expired: dict


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def persona(slug: str) -> Persona:
    team = TeamFactory(slug=slug)
    submit = team_services.token_create(team=team, user=None, name="ci", scope="submit", expires_in_days=None)
    read = team_services.token_create(team=team, user=None, name="dash", scope="read", expires_in_days=None)
    revoked = team_services.token_create(team=team, user=None, name="old", scope="submit", expires_in_days=None)
    ApiToken.objects.filter(key_hash=ApiToken.hash_key(revoked)).update(revoked_at=timezone.now())
    expired = team_services.token_create(team=team, user=None, name="gone", scope="submit", expires_in_days=1)
    ApiToken.objects.filter(key_hash=ApiToken.hash_key(expired)).update(expires_at=timezone.now() - timedelta(hours=1))
    return Persona(team, bearer(submit), bearer(read), bearer(revoked), bearer(expired))


@pytest.fixture
def alice(db, settings, tmp_path) -> Persona:
    settings.DATA_ROOT = tmp_path
    return persona("alice")


@pytest.fixture
def bob(db) -> Persona:
    return persona("bob")


@pytest.fixture
def phase(db):
    return PhaseFactory(slug="final", submissions_per_day=5)
