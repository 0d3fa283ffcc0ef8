#!/usr/bin/env bash
# Builds every image the platform needs offline: the debootstrap base, then the example algorithms FROM it.
# Each is cached by Docker; only what changed is rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/base/build.sh"
for algorithm in "$here"/algorithms/*/; do
  name=$(basename "$algorithm")
  docker build -q -t "touchstone-algo/$name:latest" --build-arg BASE_IMAGE=touchstone/base:latest \
    -f "$algorithm/Dockerfile" "$here/algorithms" >/dev/null
  echo "built touchstone-algo/$name:latest"
done
