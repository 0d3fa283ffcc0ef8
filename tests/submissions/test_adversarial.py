"""Hostile images through the whole submission path: intake → validation → run in the sandbox → scoring, on
PostgreSQL, dockerd with gVisor and real Celery workers.

Mallory's team uploads two dozen images that attack or break the run (hostile_run_images.py). Each must end
in the outcome category a team can act on, decided by evidence; nothing may stay behind (containers,
volumes, mounts, jobs in flight); and nothing from the host (paths, the engine, the database, references)
may reach anything the team can read, even on a phase that shares logs.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from benchmarks.models import Phase
from submissions import inference, intake, sandbox, selectors, sweep
from submissions.models import Job, Submission
from teams import services as team_services
from tests.conftest import wait_until
from tests.submissions.hostile_run_images import HOSTILE_IMAGES, manifest_of, save_tar

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PHASE = "touchstone-hostile-final"
TIME_LIMIT_S = 5


@pytest.fixture
def hostile_phase(celery_workers) -> Phase:
    """One job per submission (the canary holds every case), 5 s, 1 GB, logs shared with the team.

    1 GB: below it, gVisor's memory per task ends a fork bomb by the memory limit before the process limit.
    """
    call_command(
        "make_synthetic_benchmark", slug="touchstone-hostile", size="test", cases_per_site=1, seed=11,
        shard_size=100, canary_size=100, time_limit_per_case_s=0, memory_mb=1024, show_logs=True,
        submissions_per_day=100, stdout=open(os.devnull, "w"),
    )
    Phase.objects.filter(slug=PHASE).update(time_limit_overhead_s=TIME_LIMIT_S)
    return Phase.objects.get(slug=PHASE)


def team_readable(submission: Submission) -> str:
    """Everything the submitting team can read about a submission on a phase that shares logs."""
    return json.dumps(
        {
            "failure_reason": submission.failure_reason,
            "jobs": selectors.job_summaries(submission=submission, include_logs=True, include_last_line=True),
            "cases": selectors.case_rows(submission=submission),
        },
        ensure_ascii=False,
        default=str,
    )


def host_secrets(celery_workers, phase: Phase) -> list[str]:
    """Strings that exist only on the host side of the sandbox."""
    secrets = [str(settings.DATA_ROOT), celery_workers["broker_url"], "http+docker", "unix://", "docker.sock",
               "/var/lib/docker", "runsc", "Traceback"]
    secrets += [case.reference_path for case in phase.cases.all()]
    database = settings.DATABASES["default"]
    secrets += [value for value in (database.get("PASSWORD"), os.environ.get("DATABASE_URL")) if value]
    if len(socket.gethostname()) >= 6 and socket.gethostname() != "localhost":  # a short name matches any text
        secrets.append(socket.gethostname())
    return secrets


def test_hostile_images_end_in_their_category_and_leave_nothing_behind(
    hostile_phase, celery_workers, docker_client, tmp_path
):
    volumes_before = {volume.name for volume in docker_client.volumes.list()}
    mallory = team_services.team_create(name="Mallory Lab")
    submissions: dict[str, Submission] = {}
    for image in HOSTILE_IMAGES:
        tar = save_tar(docker_client, image, tmp_path / f"{image.name}.tar")
        with open(tar, "rb") as stream:
            stored = intake.image_store(team=mallory, stream=stream)
        submissions[image.name] = intake.submission_create(
            team=mallory, phase=hostile_phase, algorithm=image.name, image=stored
        )

    ids = [submission.pk for submission in submissions.values()]
    wait_until(
        lambda: not Submission.objects.filter(pk__in=ids).exclude(state__in=Submission.FINAL_STATES).exists(),
        timeout_s=900, what="every hostile submission to finish", interval_s=1,
    )

    # Each image ends in its own category, on its first attempt: a team's fault is never retried as the platform's.
    outcomes = {}
    for name, submission in submissions.items():
        job = Job.objects.get(submission=submission)
        outcomes[name] = (job.exit_reason, job.state, job.attempt, job.detail, job.platform_detail)
    wrong = {
        image.name: outcomes[image.name] for image in HOSTILE_IMAGES if outcomes[image.name][0] != image.expected
    }
    assert not wrong, f"expected {manifest_of()}\ngot {json.dumps(wrong, indent=1)}"
    assert all(attempt == 1 and not platform for _, _, attempt, _, platform in outcomes.values()), outcomes
    assert all(state in Job.FINAL_STATES for _, state, _, _, _ in outcomes.values()), outcomes

    # Nothing left behind: no job in flight, no container, no volume, no mounted /output.
    assert not Job.objects.filter(
        submission__in=ids, state__in=[Job.State.RUNNING, Job.State.QUEUED, Job.State.SCORING, Job.State.PENDING]
    ).exists()
    # (Scoped to these jobs: other tests of the session share the engine and DATA_ROOT.)
    jobs = list(Job.objects.filter(submission__in=ids))
    names = {sweep.container_name(job_id=job.pk, attempt=job.attempt) for job in jobs}
    labelled = docker_client.containers.list(all=True, filters={"label": "touchstone.job"})
    assert not [container.name for container in labelled if container.labels["touchstone.job"] in names]
    assert {volume.name for volume in docker_client.volumes.list()} <= volumes_before
    mounts = Path("/proc/mounts").read_text()
    for job in jobs:
        assert f"{inference.job_jobs_dir(job)}/" not in mounts
        assert not list(inference.job_jobs_dir(job).rglob(sandbox.OUTPUT_IMAGE))

    # Nothing from the host in what the team reads; container text stored as safe text.
    secrets = host_secrets(celery_workers, hostile_phase)
    for name, submission in submissions.items():
        submission.refresh_from_db()
        readable = team_readable(submission)
        leaked = [secret for secret in secrets if secret in readable]
        assert not leaked, f"{name} shows the team {leaked}"
        assert "\x00" not in readable and "\x1b" not in readable and "\x9b" not in readable, name
    job = {name: Job.objects.get(submission=submission) for name, submission in submissions.items()}
    assert "case\ufffdlog\ufffd" in job["nul_output"].log_tail
    assert "bad \ufffd\ufffd bytes" in job["invalid_utf8_and_escapes"].log_tail
    assert "owned" not in job["invalid_utf8_and_escapes"].log_tail  # the terminal-title escape is gone whole
    # File names the container chose go with the logs, never into the detail every page shows.
    names = job["hostile_output_names"]
    assert "unexpected file(s) in /output were ignored" in names.detail
    assert "script" not in names.detail and "utf8" not in names.detail
    assert "<script>alert(1)</script>.nii.gz" in names.log_tail and "not\ufffdutf8" in names.log_tail
    assert len(job["stdout_flood"].log_tail) <= settings.SANDBOX_LOG_TAIL_BYTES
    assert f"{TIME_LIMIT_S} s" in job["sigterm_ignored"].detail
    assert "ENTRYPOINT" in job["missing_entrypoint"].detail
    assert "out-of-memory" in job["child_only_oom"].detail
    # The container saw only its own environment: what the platform sets, nothing of the worker's.
    environment = job["environment_read"].log_tail
    assert "TOUCHSTONE_OUTPUT=/output" in environment
    assert "DATABASE_URL" not in environment and "CELERY" not in environment
