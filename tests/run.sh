#!/usr/bin/env bash
# Runs every plantd test on a fresh Debian machine that has only Rust: installs what the
# tests need first (a C compiler, PostgreSQL 15, the Docker engine, debootstrap, Chromium, exim4, slapd, glewlwyd, Node.js
# with playwright-core, Python's venv for Schemathesis), starts the
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
need node nodejs              # runs the browser test script (playwright-core drives Chromium)
need npm npm
need exim4 exim4-daemon-light # the alert e-mails' tests: a throwaway exim with STARTTLS (testkit's mail.rs)
need /usr/sbin/slapd slapd    # sign-in through LDAP: a throwaway OpenLDAP with StartTLS (testkit's ldap.rs)
need /usr/bin/glewlwyd glewlwyd  # sign-in through OIDC: a throwaway glewlwyd over HTTPS (testkit's oidc.rs)
need openssl openssl          # the OIDC provider's RSA signing keys (testkit's oidc.rs)
need systemd-analyze systemd  # the unit files' test runs systemd-analyze verify
need shellcheck shellcheck    # lints the installer and the test scripts
need_docker_engine            # the stack tests run real containers
images/build-local.sh         # builds the local images once; reused when present
# playwright-core, pinned by tests/browser/package-lock.json, from the machine's npm registry;
# it needs Node.js 18 or later (Debian 12's own nodejs).
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
  echo "tests/run.sh: Node.js $(node --version) is too old for playwright-core; install Node.js 18 or later" >&2
  exit 1
fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# tests/contract: Schemathesis and openapi-spec-validator, every dependency pinned, in a
# virtualenv from the machine's PyPI mirror; remade when the pins change.
need python3 python3
need_package python3-venv
venv=target/contract-venv
if ! cmp -s tests/contract/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/contract/requirements.txt
  cp tests/contract/requirements.txt "$venv/requirements.txt"
fi

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "rustfmt is not installed: skipping the format check"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --release --all-targets --locked -- -D warnings
else
  echo "clippy is not installed: skipping lints"
fi
shellcheck -x installer/*.sh tests/run.sh images/*.sh .ci/run
cargo test --release --locked "$@"
# The test kit's own tests (its mail server harness), when everything runs.
if [ "$#" -eq 0 ]; then
  cargo test --release --locked -p plantd-testkit
fi

# The static musl binary, built as a release is, must pass the smoke test too.
if [ "$#" -eq 0 ]; then
  installer/build-static.sh
  PLANTD_TEST_BIN="$PWD/target/x86_64-unknown-linux-musl/release/plantd" \
    cargo test --release --locked --test plant smoke::
fi
