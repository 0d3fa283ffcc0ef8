"""Safe defaults: debug off unless asked for, secrets only from the environment, `check --deploy` clean."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What deploy/docker-compose.yml gives the platform (the values are test values, the names are the real ones).
COMPOSE_ENV = {
    "DATABASE_URL": "postgres://touchstone:secret@postgres:5432/touchstone",
    "CELERY_BROKER_URL": "redis://:secret@redis:6379/0",
    "DATA_ROOT": "/srv/touchstone",
    "TOUCHSTONE_DEBUG": "false",
    "TOUCHSTONE_SECRET_KEY": "k3y-" + "7f3a9c" * 10,
    "TOUCHSTONE_ALLOWED_HOSTS": "touchstone.example.org,localhost",
    "TOUCHSTONE_CSRF_TRUSTED_ORIGINS": "https://touchstone.example.org",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("TOUCHSTONE_", "DATABASE_URL", "CELERY_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", **env})


def test_check_deploy_is_clean_with_the_compose_settings():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=COMPOSE_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_debug_is_off_unless_asked_for_and_the_secret_key_is_required():
    env = {key: value for key, value in COMPOSE_ENV.items() if key not in ("TOUCHSTONE_DEBUG", "TOUCHSTONE_SECRET_KEY")}
    done = manage("check", env=env)
    assert done.returncode != 0
    assert "TOUCHSTONE_SECRET_KEY must be set" in done.stderr
    shown = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)",
                   env={**env, "TOUCHSTONE_SECRET_KEY": COMPOSE_ENV["TOUCHSTONE_SECRET_KEY"]})
    assert shown.stdout.strip().splitlines()[-1] == "False", shown.stdout + shown.stderr


def test_check_deploy_flags_debug_and_a_weak_secret():
    done = manage("check", "--deploy", "--fail-level", "WARNING",
                  env={**COMPOSE_ENV, "TOUCHSTONE_DEBUG": "true", "TOUCHSTONE_SECRET_KEY": "short"})
    assert done.returncode != 0
    assert "security.W018" in done.stderr + done.stdout and "security.W009" in done.stderr + done.stdout
