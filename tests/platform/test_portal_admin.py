"""The admin pages of uploads and tokens: staff see scope, expiry and progress, and can revoke a token."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from api.models import Upload
from teams.models import ApiToken
from tests.factories import PhaseFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("staff", password="unused-in-tests"))
    return client


def test_token_list_shows_scope_and_whether_each_is_active_expired_or_revoked(staff_client):
    team = TeamFactory(name="Alice Lab")
    now = timezone.now()
    ApiToken.objects.create(team=team, name="laptop", key_hash="a" * 64, scope=ApiToken.Scope.READ)
    ApiToken.objects.create(team=team, name="old", key_hash="b" * 64, expires_at=now - timedelta(days=1))
    gone = ApiToken.objects.create(team=team, name="gone", key_hash="c" * 64, revoked_at=now)
    page = staff_client.get("/admin/teams/apitoken/").content.decode()
    assert "Read (phases, submissions, results, logs)" in page and "Read and submit" in page
    assert page.count("active") >= 1 and "expired" in page and "revoked" in page
    assert "a" * 64 not in page  # the hash is not a list column

    staff_client.post("/admin/teams/apitoken/", {"action": "revoke", "_selected_action": [
        str(pk) for pk in ApiToken.objects.values_list("pk", flat=True)]})
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()
    gone.refresh_from_db()
    assert gone.revoked_at == now  # an already revoked token keeps its date


def test_upload_list_shows_progress_and_refuses_edits(staff_client):
    upload = Upload.objects.create(team=TeamFactory(), phase=PhaseFactory(), algorithm="unet",
                                   size_bytes=4 * 1024**2, received_bytes=1024**2)
    page = staff_client.get("/admin/api/upload/").content.decode()
    assert "1.0\xa0MB of 4.0\xa0MB (25%)" in page
    assert staff_client.get("/admin/api/upload/add/").status_code == 403
    detail = staff_client.get(f"/admin/api/upload/{upload.pk}/change/")
    assert detail.status_code == 200 and 'name="algorithm"' not in detail.content.decode()
