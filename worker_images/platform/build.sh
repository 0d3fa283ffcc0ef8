#!/usr/bin/env bash
# Builds touchstone/platform:latest offline: a wheelhouse made on the host, installed with --no-index.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
context=$(mktemp -d /tmp/touchstone-platform.XXXXXX)
trap 'rm -rf "$context"' EXIT
"$root/.venv/bin/pip" wheel -q -w "$context/wheelhouse" "$root"
mkdir -p "$context/app"
cp -r "$root/manage.py" "$root/platform" "$context/app/"
cp "$root/worker_images/platform/Dockerfile" "$context/"
docker build -q -t touchstone/platform:latest --build-arg BASE_IMAGE=touchstone/base:latest "$context" >/dev/null
echo "built touchstone/platform:latest"
