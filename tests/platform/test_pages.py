"""The public pages through Django's test client: fallbacks and edge cases (the browser test draws the figures)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from leaderboards.models import LeaderboardSnapshot
from leaderboards.services import snapshot_current
from submissions.models import CaseResult, Submission
from submissions.selectors import results_summary
from teams.models import Membership
from tests.factories import (
    CaseFactory,
    JobFactory,
    OrganFactory,
    PhaseFactory,
    SiteFactory,
    SubmissionFactory,
)
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


def sign_in_member(client, team) -> None:
    user = get_user_model().objects.create_user(f"member-of-{team.slug}", password="unused-in-tests")
    Membership.objects.create(team=team, user=user)
    client.force_login(user)


def test_a_cancelled_submission_has_no_page_and_a_failed_one_says_why_to_its_team_only(client):
    cancelled = SubmissionFactory(state=Submission.State.CANCELLED)
    assert client.get(f"/submissions/{cancelled.pk}/").status_code == 404
    failed = SubmissionFactory(state=Submission.State.FAILED, failure_reason="The canary job crashed: exit code 1.")
    assert client.get(f"/submissions/{failed.pk}/").status_code == 404  # not a row of any public board
    sign_in_member(client, failed.team)
    page = client.get(f"/submissions/{failed.pk}/").content.decode()
    assert "Why it failed:" in page and "The canary job crashed: exit code 1." in page


def test_a_missed_organ_is_counted_beside_the_hd95_mean_never_dropped(client):
    liver = OrganFactory(name="liver", label=5)
    site = SiteFactory(benchmark=liver.benchmark)
    submission = SubmissionFactory(phase=PhaseFactory(benchmark=liver.benchmark), state=Submission.State.COMPLETED)
    job = JobFactory(submission=submission)
    for dsc, hd95_mm, status in ((0.9, 10.0, "scored"), (0.8, 20.0, "scored"), (0.0, None, "missed")):
        CaseResult.objects.create(
            submission=submission, job=job, case=CaseFactory(site=site), organ=liver, status=status,
            dsc=dsc, nsd=dsc, hd95_mm=hd95_mm,
        )
    (organ,) = results_summary(submission=submission)["organs"]
    # The missed case has an infinite HD95: 15 mm is the mean of the two finite ones, and the third is counted.
    assert (organ["hd95_mm"], organ["hd95_n_infinite"], organ["n"]) == (15.0, 1, 3)
    assert organ["dsc"] == pytest.approx(1.7 / 3)  # while DSC scores the missed case 0
    sign_in_member(client, submission.team)
    page = client.get(f"/submissions/{submission.pk}/").content.decode()
    assert "+1 missed (∞)" in page


def test_the_submission_page_aggregates_as_the_leaderboard_does():
    phase = scored_phase(cases_per_site=6, n_bootstrap=50)
    snapshot, statistics = snapshot_current(phase=phase)
    row = snapshot.rows[-1]  # the algorithm with a case without valid output
    results = results_summary(submission=Submission.objects.get(pk=row["submission_id"]))
    for metric in ("dsc", "nsd"):
        section = statistics.metrics[metric]
        entry = next(e for e in section.leaderboard if e.algorithm == row["name"])
        assert results[metric] == pytest.approx(entry.mean, rel=1e-12)
        for organ in results["organs"]:
            stats = section.organ_stats[row["name"]][organ["organ"]]
            assert (organ[metric], organ["n"]) == (pytest.approx(stats.mean, rel=1e-12), stats.n_cases)
        by_site = dict(zip(section.per_site.sites, section.per_site.headline[row["name"]], strict=True))
        assert {s["site"]: s[metric] for s in results["sites"]} == pytest.approx(by_site, rel=1e-12)
