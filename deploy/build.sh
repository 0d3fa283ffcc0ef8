#!/usr/bin/env bash
# Builds the stack's images offline: touchstone/{postgres,redis,platform,proxy}, FROM the debootstrap base
# (worker_images/base/build.sh). Debian packages come from the same mirror debootstrap uses (the build runs
# on the host's network); Python packages from a wheelhouse made on the host, installed with --no-index.
# Each image is tagged with a hash of everything it is built from, so an unchanged image is never rebuilt;
# the :latest tags, which deploy/docker-compose.yml uses, point at this build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/deploy/images
cd "$root"
if ! docker info >/dev/null 2>&1; then
  echo "Docker is not running or not reachable (docker info failed): start it (systemctl start docker) and rerun." >&2
  exit 1
fi
bash worker_images/base/build.sh
base_id=$(docker image inspect -f '{{.Id}}' touchstone/base:latest | cut -c8-19)

content_hash() {  # content_hash PATH...: one hash of every file's name and content, plus the base image
  { echo "$base_id"; find "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z \
      | xargs -0 sha256sum; } | sha256sum | cut -c1-12
}

build() {  # build NAME TAG CONTEXT [docker build args...]
  local name=$1 tag=$2 context=$3 log started; shift 3
  if docker image inspect "touchstone/$name:$tag" >/dev/null 2>&1; then
    echo "touchstone/$name:$tag is cached"
  else
    echo "building touchstone/$name:$tag"
    log=$(mktemp "/tmp/touchstone-build-$name.XXXXXX.log")
    started=$SECONDS
    # --force-rm: a failed step leaves no intermediate container behind; its output is shown, not lost.
    if ! docker build --force-rm --network host --build-arg BASE_IMAGE=touchstone/base:latest \
        -t "touchstone/$name:$tag" "$@" "$context" >"$log" 2>&1; then
      echo "building touchstone/$name failed; the last lines of its log ($log):" >&2
      tail -n 40 "$log" >&2
      return 1
    fi
    rm -f "$log"
    echo "built touchstone/$name:$tag in $((SECONDS - started)) s"
  fi
  docker tag "touchstone/$name:$tag" "touchstone/$name:latest"
}

# PostgreSQL and Redis build in the background while the platform's wheelhouse and image build (on two
# cores this took a cold build from 140 s to 80-110 s); the proxy needs the platform image.
context=""
background=()
finish() { wait "${background[@]}" 2>/dev/null || true; [ -z "$context" ] || rm -rf "$context"; }
trap finish EXIT
build postgres "$(content_hash "$here/postgres")" "$here/postgres" & background+=($!)
build redis "$(content_hash "$here/redis")" "$here/redis" & background+=($!)

platform_tag=$(content_hash pyproject.toml manage.py platform submissions evaluator touchstone_cli "$here/platform")
if ! docker image inspect "touchstone/platform:$platform_tag" >/dev/null 2>&1; then
  context=$(mktemp -d /tmp/touchstone-platform.XXXXXX)
  echo "building the platform's wheelhouse"
  # The host's Python may be newer than the image's (Debian's 3.11.2): add what older patch releases need.
  # (pip's notes about configured package indexes that do not exist on this host are left out.)
  "$root/.venv/bin/pip" wheel -q -w "$context/wheelhouse" "$root" "async-timeout>=4.0.3" \
    2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
  mkdir -p "$context/app/deploy"
  cp -r manage.py platform "$context/app/"
  find "$context/app" -name __pycache__ -prune -exec rm -rf {} +
  cp "$here/platform/entrypoint.sh" "$here/platform/wait_for_services.py" "$context/app/deploy/"
  cp "$here/platform/Dockerfile" "$context/"
  build platform "$platform_tag" "$context"
else
  build platform "$platform_tag" "$here/platform"
fi

build proxy "$(content_hash "$here/proxy")-$platform_tag" "$here/proxy" \
  --build-arg PLATFORM_IMAGE="touchstone/platform:$platform_tag"
for pid in "${background[@]}"; do
  wait "$pid" || { echo "a background image build failed (see above)" >&2; exit 1; }
done
