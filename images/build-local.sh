#!/usr/bin/env bash
# Builds the plant stack's images from Debian's packages, for machines that cannot reach an image
# registry. Idempotent: an image already built from the same recipe is reused.
#
#   images/build-local.sh            # builds what is missing, prints the image names
#
# It makes one Debian root filesystem with debootstrap (PostgreSQL 15, Redis 7, Python 3), imports
# it with `docker import` as plantd-local/base, then builds the three service images on top of it
# from images/local/*/Dockerfile (no registry is contacted: their FROM is the local base).
# The Debian mirror is the one apt uses on this machine (or PLANTD_DEBIAN_MIRROR).
# Needs root (debootstrap) and a running Docker engine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite="${PLANTD_DEBIAN_SUITE:-bookworm}"
packages="postgresql-15,redis-server,python3,python3-psycopg2,ca-certificates,tar,zstd"
base="plantd-local/base:$suite"

die() { echo "build-local.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap); run it with sudo"
command -v docker >/dev/null || die "the docker client is missing (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers; start dockerd first"

# shellcheck source=images/debian-mirror.sh
. "$here/debian-mirror.sh"

# The base image carries a hash of what went into it, so a changed package list rebuilds it.
recipe="$(printf '%s %s\n' "$suite" "$packages" | sha256sum | cut -c1-16)"
have="$(docker image inspect -f '{{ index .Config.Labels "io.plantd.recipe" }}' "$base" 2>/dev/null || true)"
if [ "$have" != "$recipe" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  root="$(mktemp -d /var/tmp/plantd-rootfs.XXXXXX)"
  trap 'rm -rf "$root"' EXIT
  m="$(mirror)"
  echo "building $base from $m (debootstrap; about a minute, most of it download)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$m" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; die "debootstrap failed (full log: $root.log)"; }
  rm -f "$root.log"
  # The packages' own clusters and caches are not wanted in an image.
  rm -rf "$root"/var/lib/postgresql/15/main "$root"/etc/postgresql/15/main \
         "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar --numeric-owner -C "$root" -c . | docker import \
    --change "LABEL io.plantd.recipe=$recipe" \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    - "$base" >/dev/null
fi
echo "$base"

for svc in postgres redis odoo-emulator; do
  tag="$(sed -n 's/^# tag: //p' "$here/local/$svc/Dockerfile")"
  [ -n "$tag" ] || die "images/local/$svc/Dockerfile has no '# tag:' line"
  # The legacy builder needs no registry for a local FROM; its output is shown only on failure.
  if ! out="$(DOCKER_BUILDKIT=0 docker build --force-rm --build-arg "BASE=$base" -t "$tag" "$here/local/$svc" 2>&1)"; then
    echo "$out" >&2
    die "building $tag failed"
  fi
  echo "$tag"
done
