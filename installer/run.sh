#!/usr/bin/env bash
# Builds plantd from this checkout and runs `plantd up` with the given arguments, installing
# what the build needs first (a C compiler, for the bundled SQLite and ring).
#   ./installer/run.sh                         # defaults: HTTPS on 0.0.0.0:8443
#   ./installer/run.sh --data-dir /tmp/plant --listen 127.0.0.1:9443
#   sudo ./installer/run.sh --stack            # also runs PostgreSQL, Redis and Odoo (the emulator)
#                                              # in Docker under plantd, from local images
# --stack installs and starts the Docker engine if need be, builds the local images once
# (images/build-local.sh, about a minute), and uses installer/stack-local.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
. installer/deps.sh
need cc build-essential
if [ "${1:-}" = "--stack" ]; then
  shift
  if [ "$(id -u)" -ne 0 ]; then
    echo "--stack needs root (Docker, debootstrap); run it with sudo" >&2
    exit 1
  fi
  need debootstrap debootstrap
  need_docker_engine
  images/build-local.sh
  set -- --config installer/stack-local.toml "$@"
fi
exec cargo run --release --locked -- up "$@"
