"""Session fixtures for the real services: Redis, Celery worker processes, dockerd, the test set.

PostgreSQL is the test database of pytest-django (DATABASE_URL, set by `make test`): a database test
fails at once without it, never falls back to SQLite. Redis is a private server on a free loopback port. Workers are real `celery worker` processes on the test database.
Nothing here is mocked. A missing service skips its tests locally and fails them under CI=true.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
ALGORITHM_IMAGES = ("touchstone-algo/baseline:latest", "touchstone-algo/fragile:latest")


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where every service must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a required service is missing)")
    pytest.skip(reason)


def wait_until(predicate: Callable[[], object], *, timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll with a deadline instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """Refuse to create a test database anywhere but PostgreSQL (pytest-django runs this first).

    Without DATABASE_URL the settings fall back to the demo's SQLite, which hides locking, constraint and
    transaction behaviour the platform depends on. Tests that use no database run without one.
    """
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine != "django.db.backends.postgresql":
        found = f"DATABASE_URL selects {engine}" if os.environ.get("DATABASE_URL") else "DATABASE_URL is unset"
        pytest.fail(
            f"Database tests need PostgreSQL, but {found}. Run them with `make test`, or set DATABASE_URL "
            "as the Makefile does, e.g. DATABASE_URL=postgres://%2Fvar%2Frun%2Fpostgresql/touchstone.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means no engine
        unavailable(f"no Docker engine: {error}. Run `make services`.")
    if not client.images.list(name="touchstone/base:latest"):
        unavailable("the offline base image touchstone/base is not built. Run `make images`.")
    return client


@pytest.fixture(scope="session")
def algorithm_images(docker_client) -> dict[str, str]:
    missing = [name for name in ALGORITHM_IMAGES if not docker_client.images.list(name=name)]
    if missing:
        unavailable(f"images {missing} are not built. Run `make images`.")
    return {name.split("/")[1].split(":")[0]: name for name in ALGORITHM_IMAGES}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server is not installed. Run `make setup`.")
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    wait_until(lambda: _ping(client), timeout_s=20, what="redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Iterator[Path]:
    """The session's DATA_ROOT. At the end nothing may be mounted under it: a leaked mount is a bug.

    Whatever is left (an attempt's /output no worker or reaper unmounted) is unmounted here, so pytest
    never leaves busy folders behind, and the session fails naming each mount.
    """
    root = tmp_path_factory.mktemp("data_root")
    root.chmod(0o755)
    yield root
    from submissions import sandbox

    left = sandbox.mounts_under(root)
    for mount_point, _filesystem in left:
        try:
            sandbox.unmount(mount_point)
        except sandbox.PlatformError as error:
            print(f"could not unmount {mount_point}: {error}", file=sys.stderr)
    if left:
        listed = "\n".join(f"  {mount_point} ({filesystem})" for mount_point, filesystem in left)
        pytest.fail(
            f"{len(left)} mount(s) were left under the session's DATA_ROOT {root} (now unmounted):\n{listed}\n"
            "Every attempt's /output must be unmounted by its worker, or by the reaper once its lease is gone.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, redis_url, data_root, docker_client) -> Iterator[dict]:
    """Two real worker processes: one for inference (and default), one for scoring."""
    from django.conf import settings
    from django.db import connection

    from touchstone_site.celery import app

    database = connection.settings_dict
    from urllib.parse import quote

    credentials = f"{quote(database['USER'])}:{quote(database['PASSWORD'])}@" if database["USER"] else ""
    port = f":{database['PORT']}" if database["PORT"] else ""
    database_url = f"postgres://{credentials}{quote(database['HOST'] or '/var/run/postgresql', safe='')}{port}/{database['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "DATA_ROOT": str(data_root),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "TOUCHSTONE_SCORING_PROCESSES": "2",
        # Containers of this session only: the reaper never touches another session's on a shared engine.
        "TOUCHSTONE_SANDBOX_CONTAINER_PREFIX": f"touchstone-job-s{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
    }
    logs = data_root.parent / "worker-logs"
    logs.mkdir(exist_ok=True)
    workers = []
    for name, queues in (("inference", "inference,default"), ("scoring", "scoring")):
        log = open(logs / f"{name}.log", "w")
        workers.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "touchstone_site", "worker", "-Q", queues,
                     "-n", f"{name}@%h", "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                ),
                log,
            )
        )
    # The test process publishes to the same Redis, for real (no eager mode).
    saved = (app.conf.broker_url, app.conf.task_always_eager, settings.DATA_ROOT)
    app.conf.broker_url, app.conf.task_always_eager = redis_url, False
    settings.DATA_ROOT = data_root
    reset_broker_connections(app)
    wait_until(
        lambda: all((logs / f"{n}.log").read_text().count("ready.") for n in ("inference", "scoring")),
        timeout_s=60,
        what="celery workers to be ready",
    )
    yield {"logs": logs, "data_root": data_root, "broker_url": redis_url}
    for process, _log in workers:
        os.killpg(process.pid, signal.SIGTERM)
    for process, log in workers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
    app.conf.broker_url, app.conf.task_always_eager, settings.DATA_ROOT = saved
    reset_broker_connections(app)


def reset_broker_connections(app) -> None:
    """Forget connections and producers made for the old broker URL.

    Even an eager `.delay()` acquires a producer (on memory://), and `app.amqp` caches its producer pool
    beyond `app.close()`: without this, later messages would go to the in-memory broker, not to Redis.
    """
    app.close()
    app.__dict__.pop("amqp", None)  # a cached property: rebuilt on next use, with a fresh producer pool


SYNTHETIC_PHASE = "touchstone-synthetic-final"


@pytest.fixture
def synthetic_phase(celery_workers):
    """The synthetic benchmark's final phase at its smallest (2 cases a site, shards of 2, logs shared), with the
    Celery workers running: what the end-to-end tests submit to."""
    from django.core.management import call_command

    from benchmarks.models import Phase

    call_command(
        "make_synthetic_benchmark", size="test", cases_per_site=2, seed=7, shard_size=2, canary_size=2,
        time_limit_per_case_s=60, memory_mb=1024, show_logs=True, stdout=open(os.devnull, "w"),
    )
    return Phase.objects.get(slug=SYNTHETIC_PHASE)
