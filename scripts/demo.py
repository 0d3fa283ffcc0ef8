"""`make demo`: the platform's main job end to end on the embedded default (SQLite, Celery eager).

Creates the synthetic multi-site benchmark, two teams with API tokens, serves the site, submits the
baseline and the fragile algorithm through the `touchstone` CLI and the REST API, prints the leaderboard
in the terminal, and keeps serving http://127.0.0.1:8000/ until stopped (Ctrl-C).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
ADDRESS = os.environ.get("TOUCHSTONE_DEMO_ADDRESS", "127.0.0.1:8000")
SIZE = os.environ.get("TOUCHSTONE_DEMO_SIZE", "realistic")
CASES_PER_SITE = os.environ.get("TOUCHSTONE_DEMO_CASES_PER_SITE", "2")
PHASE = "touchstone-synthetic-final"
# The demo's organizer (staff, superuser), with a new password every run.
ORGANIZER = """
import os
from django.contrib.auth import get_user_model
user, _ = get_user_model().objects.get_or_create(username="organizer", defaults={"email": "organizer@localhost"})
user.is_staff = user.is_superuser = True
user.set_password(os.environ["DEMO_ORGANIZER_PASSWORD"])
user.save()
"""


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        PYTHONPATH=f"{ROOT / 'platform'}:{ROOT}",
        DATA_ROOT=str(ROOT / "var" / "demo"),
        TOUCHSTONE_DEMO="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(*args: str, capture: bool = False, **env: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "python"), str(ROOT / "manage.py"), *args],
        env={**environment(), **env}, check=True, text=True, capture_output=capture,
    )
    return result.stdout.strip() if capture else ""


def touchstone(token: str, *args: str) -> int:
    env = {**environment(), "TOUCHSTONE_SERVER": f"http://{ADDRESS}", "TOUCHSTONE_TOKEN": token,
           "TOUCHSTONE_CONFIG": str(ROOT / "var" / "demo" / "cli-config.json")}
    print(f"\n$ touchstone {' '.join(args)}", flush=True)
    return subprocess.run([str(VENV_BIN / "touchstone"), *args], env=env).returncode


def wait_for_server(deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{ADDRESS}/", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the web server did not start on {ADDRESS}; see the output above")


def main() -> int:
    (ROOT / "var" / "demo").mkdir(parents=True, exist_ok=True)
    print("== Touchstone demo: embedded default (SQLite, Celery eager), sandbox runtime "
          f"{os.environ.get('TOUCHSTONE_SANDBOX_RUNTIME', 'runsc')}")
    manage("migrate", "--noinput", "-v", "0")
    manage("make_synthetic_benchmark", "--size", SIZE, "--cases-per-site", CASES_PER_SITE,
           "--time-limit-per-case-s", "300", "--memory-mb", "6144", "--cpus", "2", "--show-logs")
    organizer_password = secrets.token_urlsafe(12)
    manage("shell", "-c", ORGANIZER, DEMO_ORGANIZER_PASSWORD=organizer_password)
    alice = manage("create_team", "Alice Lab", "--quiet", capture=True)
    bob = manage("create_team", "Bob Lab", "--quiet", capture=True)

    server = subprocess.Popen(
        [str(VENV_BIN / "python"), str(ROOT / "manage.py"), "runserver", ADDRESS, "--noreload"],
        env=environment(),
    )
    try:
        wait_for_server()
        touchstone(alice, "phases")
        touchstone(alice, "submit", "touchstone-algo/baseline:latest", "--phase", PHASE, "--algorithm", "baseline",
                   "--wait")
        touchstone(bob, "submit", "touchstone-algo/fragile:latest", "--phase", PHASE, "--algorithm", "fragile",
                   "--wait")
        touchstone(alice, "leaderboard", PHASE)
        print(f"\nThe site is at http://{ADDRESS}/ (leaderboard: http://{ADDRESS}/phases/{PHASE}/).\n"
              f"Teams sign up at http://{ADDRESS}/portal/. Organizers: http://{ADDRESS}/dashboard/ as "
              f"`organizer`, password {organizer_password} (this demo's only).\nCtrl-C stops it.", flush=True)
        if os.environ.get("TOUCHSTONE_DEMO_EXIT"):
            return 0
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
