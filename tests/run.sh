#!/usr/bin/env bash
# Runs every plantd test on a fresh Debian machine that has only Rust: installs what the
# tests need first (a C compiler, PostgreSQL 15, the Docker engine, debootstrap, Chromium), starts the
# Docker engine and builds the stack's local images, then checks formatting and lints, then
# runs the unit and integration tests (which drive the real plantd binary, real PostgreSQL
# clusters they start in temporary directories, and real containers).
#
# Needs root: the disk-full test mounts a small tmpfs. Re-runs itself with sudo if it can.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,HOME "$0" "$@"
  fi
  echo "tests/run.sh: the tests need root (the disk-full test mounts a tmpfs); run it as root" >&2
  exit 1
fi

. installer/deps.sh
need cc build-essential   # SQLite (bundled) and ring compile C
need mount mount          # the disk-full test's tmpfs
need runuser util-linux   # PostgreSQL runs as its own user
need /usr/lib/postgresql/15/bin/initdb postgresql-15   # the hub's store, a throwaway cluster per test
need debootstrap debootstrap  # images/build-local.sh: the stack's images from Debian's packages
need zstd zstd                # the backup test opens an archive with tar --zstd, as an admin would
need age age                  # the backup test opens an encrypted archive with age, as an admin would
need chromium chromium        # the browser the admin UI's tests drive, headless
need_docker_engine            # the stack tests run real containers
images/build-local.sh         # builds the local images once; reused when present

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "rustfmt is not installed: skipping the format check"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --all-targets --locked -- -D warnings
else
  echo "clippy is not installed: skipping lints"
fi
cargo test --release --locked "$@"
