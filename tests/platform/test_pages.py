"""The public pages through Django's test client: fallbacks and edge cases (the browser test draws the figures)."""

from __future__ import annotations

import pytest

from leaderboards.models import LeaderboardSnapshot
from submissions.models import Submission
from tests.factories import PhaseFactory, SubmissionFactory
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


def test_a_phase_without_submissions_says_how_to_submit(client):
    phase = PhaseFactory()
    response = client.get(f"/phases/{phase.slug}/")
    assert response.status_code == 200
    assert f"touchstone submit IMAGE --phase {phase.slug}" in response.content.decode()


def test_unknown_metric_or_organ_falls_back_instead_of_failing(client):
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    response = client.get(f"/phases/{phase.slug}/?metric=hd95&organ=brain")
    assert response.status_code == 200
    assert response.context["metric"] == "dsc" and response.context["organ"] == "spleen"
    assert 'id="chart-significance"' in response.content.decode()


def test_the_page_reads_the_latest_snapshot_and_computes_nothing(client, django_assert_max_num_queries):
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    with django_assert_max_num_queries(12):
        response = client.get(f"/phases/{phase.slug}/")
    assert [row["name"] for row in response.context["rows"]] == list(ALGORITHMS)
    LeaderboardSnapshot.objects.create(phase=phase, submission_ids=[], rows=[], statistics={})
    assert "No completed submission yet" in client.get(f"/phases/{phase.slug}/").content.decode()


def test_a_cancelled_submission_has_no_page_and_a_failed_one_says_why(client):
    cancelled = SubmissionFactory(state=Submission.State.CANCELLED)
    assert client.get(f"/submissions/{cancelled.pk}/").status_code == 404
    failed = SubmissionFactory(state=Submission.State.FAILED, failure_reason="The canary job crashed: exit code 1.")
    page = client.get(f"/submissions/{failed.pk}/").content.decode()
    assert "Why it failed:" in page and "The canary job crashed: exit code 1." in page
