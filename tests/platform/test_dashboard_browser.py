"""The organizers' dashboard in Debian's headless Chromium on the live Django server (PostgreSQL, real Redis broker).

charlie (staff) reruns alice's platform-failed job: he confirms with a reason, the job is queued again (its
message waits on the real `inference` queue, which the dashboard counts) and the audit log shows who, what and
why. bob (a team member, not staff) is sent to the staff login instead.
"""

from __future__ import annotations

import pytest
import redis
from django.contrib.auth import get_user_model

from dashboard.models import AuditEntry
from evaluator.choices import ExitReason
from submissions.models import Job, Submission
from teams.models import Membership
from tests.conftest import reset_broker_connections
from tests.factories import JobFactory
from tests.platform.test_pages_browser import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]



@pytest.fixture
def broker_without_workers(redis_url, settings):
    """Tasks are published to a real Redis (its own database), and nobody consumes them."""
    from touchstone_site.celery import app

    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    saved = (app.conf.broker_url, app.conf.task_always_eager)
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = url, False
    app.conf.broker_url, app.conf.task_always_eager = url, False
    reset_broker_connections(app)
    yield url
    app.conf.broker_url, app.conf.task_always_eager = saved
    reset_broker_connections(app)


def log_in(page, base_url: str, username: str, next_path: str) -> None:
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    page.errors.clear()  # the admin's login page asks for a /favicon.ico we do not serve


def test_staff_rerun_a_failed_job_and_see_it_in_the_audit_log(live_server, page, tmp_path, broker_without_workers):
    get_user_model().objects.create_user("charlie", password="correct horse", is_staff=True)
    job = JobFactory(
        submission__state=Submission.State.FAILED, submission__failure_reason="The platform failed.",
        is_canary=True, state=Job.State.FAILED, exit_reason=ExitReason.PLATFORM_ERROR, attempt=3,
        detail="The platform could not run this job.", platform_detail="docker: connection refused",
    )
    log_in(page, live_server.url, "charlie", f"/dashboard/submissions/{job.submission_id}/")
    page.wait_for_selector(f"#job-{job.pk}")
    assert "docker: connection refused" in page.locator(f"#job-{job.pk}").inner_text()  # staff see the engine
    page.click(f"#job-{job.pk} a.rerun")
    page.wait_for_selector("form#confirm")
    page.click("#confirm-button")  # no reason: refused, nothing done
    assert page.locator("textarea[name=reason]").evaluate("e => e.validity.valueMissing")
    page.fill("textarea[name=reason]", "Docker daemon restarted during the run")
    page.click("#confirm-button")
    page.wait_for_selector("#message")
    screenshot(page, tmp_path, "dashboard-rerun")
    assert "queued again" in page.locator("#message").inner_text()
    audit_row = page.locator("#audit tr", has_text="Docker daemon restarted during the run")
    assert audit_row.count() == 1
    assert "charlie" in audit_row.inner_text() and "Rerun a job" in audit_row.inner_text()
    job.refresh_from_db()
    assert (job.state, job.exit_reason, job.attempt_offset) == (Job.State.QUEUED, "", 3)
    entry = AuditEntry.objects.get()
    assert (entry.actor.username, entry.action, entry.target) == (
        "charlie", AuditEntry.Action.JOB_RERUN, f"job {job.index} of submission #{job.submission_id}"
    )
    page.goto(f"{live_server.url}/dashboard/")  # the rerun's message waits on the real inference queue
    page.wait_for_selector("#queues")
    assert "Queue inference\n1" in page.locator("#queues").inner_text()
    assert page.errors == []


def test_a_team_member_is_refused_the_dashboard(live_server, page):
    bob = get_user_model().objects.create_user("bob", password="correct horse")
    job = JobFactory(state=Job.State.FAILED, exit_reason=ExitReason.PLATFORM_ERROR)
    Membership.objects.create(team=job.submission.team, user=bob)
    log_in(page, live_server.url, "bob", "/dashboard/")
    page.goto(f"{live_server.url}/dashboard/act/job_rerun/{job.pk}/")
    assert "/admin/login/" in page.url
    assert page.locator("form#confirm").count() == 0
    assert "Organizers' dashboard" not in page.content()
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and not AuditEntry.objects.exists()
