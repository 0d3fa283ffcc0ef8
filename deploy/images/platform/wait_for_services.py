"""Wait until PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL) accept connections, or give up.

Run by the platform image's entrypoint before every service. No Django: it must work before migrations.
Exits 0 when both answer, 1 with the last error of each after --timeout seconds.
"""

import argparse
import os
import sys
import time

import psycopg
import redis


def database_ready(url: str) -> str | None:
    try:
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=3) as connection:
            connection.execute("select 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def broker_ready(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as error:
        return str(error) or type(error).__name__
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait in all")
    timeout_s = parser.parse_args().timeout
    checks = {}
    if os.environ.get("DATABASE_URL"):
        checks["PostgreSQL"] = (database_ready, os.environ["DATABASE_URL"])
    if os.environ.get("CELERY_BROKER_URL", "").startswith(("redis://", "rediss://")):
        checks["Redis"] = (broker_ready, os.environ["CELERY_BROKER_URL"])
    deadline = time.monotonic() + timeout_s
    errors: dict[str, str] = {}
    while True:
        errors = {name: error for name, (check, url) in checks.items() if (error := check(url))}
        if not errors:
            return 0
        if time.monotonic() > deadline:
            for name, error in errors.items():
                print(f"{name} did not accept connections within {timeout_s:.0f} s: {error}", file=sys.stderr)
            print("Check that the service is running and that DATABASE_URL / CELERY_BROKER_URL (host, port, "
                  "password) point at it.", file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
