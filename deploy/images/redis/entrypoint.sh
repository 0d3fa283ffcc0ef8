#!/bin/sh
# Redis in the foreground, reachable on the compose network (and on a published port for worker hosts).
set -eu
if [ -n "${REDIS_PASSWORD:-}" ]; then
  exec redis-server --bind 0.0.0.0 --protected-mode no --dir /data --appendonly yes --requirepass "$REDIS_PASSWORD" "$@"
fi
exec redis-server --bind 0.0.0.0 --protected-mode no --dir /data --appendonly yes "$@"
