#!/usr/bin/env bash
# Builds the offline base image every platform image is FROM: Debian bookworm with python3, numpy,
# scipy and nibabel from Debian packages (debootstrap, then `docker import`). No registry is needed.
# Cached by tag: the tag carries a hash of this script, so editing it builds a new image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages="python3,python3-venv,python3-numpy,python3-scipy,python3-nibabel,ca-certificates"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
hash=$(sha256sum "$here/build.sh" | cut -c1-12)
tag=${TOUCHSTONE_BASE_IMAGE:-touchstone/base:bookworm-$hash}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag is cached"
  docker tag "$tag" touchstone/base:latest
  exit 0
fi

root=$(mktemp -d /tmp/touchstone-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building base image $tag with debootstrap from $mirror (about 2 minutes)"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -20 "$root.log"; echo "debootstrap failed: see $root.log" >&2; exit 1; }
rm -f "$root.log"
# Keep the image small: package caches and docs are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/locale/*
# The unprivileged user algorithm containers run as (uid 1000), and the contract's mount points.
chroot "$root" /usr/sbin/useradd --uid 1000 --create-home --shell /usr/sbin/nologin algorithm
mkdir -p "$root/input" "$root/output"
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1' \
  --change 'CMD ["/usr/bin/python3"]' - "$tag" >/dev/null
docker tag "$tag" touchstone/base:latest
echo "built $tag"
