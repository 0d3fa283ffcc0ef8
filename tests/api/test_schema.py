"""The OpenAPI schema against the live app (Schemathesis): no 500, and every response matches the schema."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance
from schemathesis.transport.serialization import serialize_binary

from tests.api.conftest import persona
from tests.factories import PhaseFactory, SubmissionFactory


@schemathesis.serializer("application/x-tar", "application/octet-stream")
def _raw_bytes(ctx, value) -> bytes:
    """An image upload or a chunk: the generated value, as raw bytes."""
    return serialize_binary(value)


@pytest.fixture
def api_schema(db, settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    settings.API_RATE_PER_TOKEN = "100000/minute"
    # As Django's test client does: the app runs inside the test's transaction, whose connection must stay open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def caller(db):
    alice = persona("alice-schema")
    SubmissionFactory(team=alice.team, phase=PhaseFactory(slug="final"))
    return alice


def test_every_endpoint_answers_as_documented(api_schema, caller):
    """Each operation gets generated paths, queries, headers and bodies, sent with a read+submit token."""
    token = caller.submit["HTTP_AUTHORIZATION"]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            response = case.call(headers={"Authorization": token})
            # ignored_auth takes our real token for a generated one (tests/api/test_permissions.py proves the
            # refusals); positive_data_acceptance counts a schema-valid but refused request (unknown phase,
            # quota used, too large: a documented 400 with its reason) as a failure.
            case.validate_response(response, excluded_checks=[ignored_auth, positive_data_acceptance])

        answers_as_documented()


def test_schema_and_docs_are_served_without_a_cdn(client, db):
    schema_response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema_response.status_code == 200
    paths = schema_response.json()["paths"]
    for path in ("/api/v1/uploads/", "/api/v1/uploads/{upload_id}/", "/api/v1/uploads/{upload_id}/complete/",
                 "/api/v1/phases/", "/api/v1/submissions/{submission_id}/", "/api/v1/phases/{slug}/samples/"):
        assert path in paths, path
    docs = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower() and "/static/drf_spectacular_sidecar/" in docs
