"""Dashboard actions through Django's test client: each asks for a reason, acts, and is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from benchmarks.models import Phase
from dashboard.models import AuditEntry
from evaluator.choices import ExitReason
from leaderboards.selectors import latest_snapshot, published_snapshot, ranked_submissions
from submissions.models import CaseResult, Job, Submission
from teams.models import Membership
from tests.factories import JobFactory, SubmissionFactory
from tests.platform.scored_phase import ALGORITHMS, scored_phase

pytestmark = pytest.mark.django_db


@pytest.fixture
def charlie(client):
    client.force_login(get_user_model().objects.create_user("charlie", is_staff=True))
    return client


def test_an_action_without_a_reason_is_refused_and_not_done(charlie):
    job = JobFactory(is_canary=True, state=Job.State.RUNNING)
    response = charlie.post(f"/dashboard/act/job_cancel/{job.pk}/", {"reason": "  "})
    assert response.status_code == 400 and "Write the reason" in response.content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and not AuditEntry.objects.exists()
    charlie.post(f"/dashboard/act/job_cancel/{job.pk}/", {"reason": "Runaway job"})
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert AuditEntry.objects.get().reason == "Runaway job"


def test_disqualify_takes_the_row_off_and_the_team_reads_why(charlie, client, django_capture_on_commit_callbacks):
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    bob_lab = Submission.objects.get(team__slug="bob-lab")
    with django_capture_on_commit_callbacks(execute=True):  # the board is recomputed once the action commits
        charlie.post(f"/dashboard/act/disqualify/{bob_lab.pk}/", {"reason": "Trained on the hidden test set."})
    assert "Bob Lab" not in [row["team"] for row in latest_snapshot(phase=phase).rows]
    bob = get_user_model().objects.create_user("bob")
    Membership.objects.create(team=bob_lab.team, user=bob)
    client.force_login(bob)
    assert "Trained on the hidden test set." in client.get(f"/submissions/{bob_lab.pk}/").content.decode()


def test_quota_publish_and_retry_are_audited(charlie):
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    team = Submission.objects.get(team__slug="alice-lab").team
    charlie.post(f"/dashboard/act/team_quota/{phase.pk}/", {"team": team.pk, "submissions_per_day": 9, "reason": "x"})
    assert phase.quota_for(team) == 9
    failed = JobFactory(submission__phase=phase, is_canary=True, state=Job.State.FAILED,
                        exit_reason=ExitReason.PLATFORM_ERROR)
    JobFactory(submission__phase=phase, is_canary=True, state=Job.State.FAILED, exit_reason=ExitReason.CRASHED)
    charlie.post(f"/dashboard/act/phase_retry/{phase.pk}/", {"reason": "Engine back"})
    failed.refresh_from_db()
    assert failed.state == Job.State.QUEUED
    assert Job.objects.filter(state=Job.State.FAILED, exit_reason=ExitReason.CRASHED).count() == 1  # team-side stays
    charlie.post(f"/dashboard/act/publish/{phase.pk}/", {"reason": "Final results"})
    assert published_snapshot(phase=phase) is not None
    assert [e.action for e in AuditEntry.objects.order_by("pk")] == ["team_quota", "phase_retry", "publish"]
    page = charlie.get("/dashboard/").content.decode()
    assert "Final results" in page and "Engine back" in page


def test_one_row_per_team_chosen_by_the_phase_setting():
    phase = scored_phase(cases_per_site=4, n_bootstrap=50)
    alice = Submission.objects.get(team__slug="alice-lab")
    worse = SubmissionFactory(team=alice.team, phase=phase, algorithm="unet-v2", state=Submission.State.COMPLETED,
                              completed_at=alice.completed_at.replace(year=alice.completed_at.year + 1))
    job = JobFactory(submission=worse)
    CaseResult.objects.bulk_create(
        CaseResult(submission=worse, job=job, case=r.case, organ=r.organ, status=r.status,
                   dsc=None if r.dsc is None else r.dsc / 2, nsd=r.nsd)
        for r in alice.results.all()
    )
    by_team = {s.team.slug: s for s in ranked_submissions(phase=phase)}
    assert len(by_team) == len(ALGORITHMS) and by_team["alice-lab"] == worse  # latest
    Phase.objects.filter(pk=phase.pk).update(public_row=Phase.PublicRow.BEST)
    phase.refresh_from_db()
    assert {s.team.slug: s for s in ranked_submissions(phase=phase)}["alice-lab"] == alice
