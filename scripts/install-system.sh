#!/usr/bin/env bash
# Installs the Debian packages the platform needs, only those missing. Run as root on Debian bookworm.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v runsc >/dev/null || need+=(runsc)
command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)  # a whole test image
command -v zstd >/dev/null || need+=(zstd)     # image intake decompresses zstd layers to count them
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)  # each job's capped /output is a loop-mounted ext4 image
command -v docker-compose >/dev/null || need+=(docker-compose)  # make test-deploy: the production stack
command -v openssl >/dev/null || need+=(openssl)  # its test certificate
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "Missing packages (${need[*]}): run as root, or install them with apt-get." >&2; exit 1; fi
  echo "Installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
