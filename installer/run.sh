#!/usr/bin/env bash
# Builds plantd from this checkout and runs `plantd up` with the given arguments, installing
# what the build needs first (a C compiler, for the bundled SQLite and ring).
#   ./installer/run.sh                         # defaults: HTTPS on 0.0.0.0:8443
#   ./installer/run.sh --data-dir /tmp/plant --listen 127.0.0.1:9443
set -euo pipefail
cd "$(dirname "$0")/.."
. installer/deps.sh
need cc build-essential
exec cargo run --release --locked -- up "$@"
