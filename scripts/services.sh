#!/usr/bin/env bash
# Starts the services the platform and its tests use, each only if it is not already running:
# dockerd (with gVisor's runsc runtime registered, network off inside the sandbox), PostgreSQL, Redis.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/var/log"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "$what did not start; see $root/var/log/" >&2; return 1; fi
    sleep 0.5
  done
}

# --- Docker with gVisor ----------------------------------------------------------------------------
runsc_path=$(command -v runsc || true)
if [ -n "$runsc_path" ]; then
  mkdir -p /etc/docker
  python3 - "$runsc_path" <<'PY'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
wanted = {"path": sys.argv[1], "runtimeArgs": ["--network=none"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    path.write_text(json.dumps(config, indent=2) + "\n")
    print("registered gVisor (runsc) as a Docker runtime in /etc/docker/daemon.json")
PY
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  (setsid dockerd >"$root/var/log/dockerd.log" 2>&1 &)
  wait_for 60 dockerd docker info
fi
if [ -n "$runsc_path" ] && ! docker info --format '{{json .Runtimes}}' | grep -q runsc; then
  pkill -HUP dockerd && sleep 2  # reload daemon.json
fi

# --- PostgreSQL -------------------------------------------------------------------------------------
cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
if ! pg_lsclusters --no-header | awk 'NR==1 {print $4}' | grep -q online; then
  echo "starting PostgreSQL $cluster"
  pg_ctlcluster --skip-systemctl-redirect $cluster start
fi
wait_for 30 PostgreSQL su postgres -c "psql -qAtc 'select 1'"
# A superuser role for the local account, authenticated over the Unix socket (peer): no password anywhere.
me=$(id -un)
su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='$me'\"" | grep -q 1 \
  || su postgres -c "createuser --superuser $me"
su postgres -c "psql -qAtc \"select 1 from pg_database where datname='touchstone'\"" | grep -q 1 \
  || su postgres -c "createdb --owner $me touchstone"

# --- Redis ------------------------------------------------------------------------------------------
if ! redis-cli ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --logfile "$root/var/log/redis.log" >/dev/null
  wait_for 20 Redis redis-cli ping
fi
echo "services up: dockerd ($(docker info --format '{{.ServerVersion}}'), runtimes: $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')), PostgreSQL, Redis"
