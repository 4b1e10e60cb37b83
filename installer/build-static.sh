#!/usr/bin/env bash
# Builds the static release binary: x86_64-unknown-linux-musl, rustls only (no OpenSSL), SQLite
# bundled. Installs musl-tools from Debian's packages and the Rust target if they are missing,
# then prints where the binary is, its size, and what ldd says of it (it must need nothing).
# Usage: installer/build-static.sh            -> target/x86_64-unknown-linux-musl/release/plantd
set -euo pipefail
cd "$(dirname "$0")/.."
. installer/deps.sh

target=x86_64-unknown-linux-musl
need musl-gcc musl-tools   # ring and SQLite compile C for musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
cargo build --release --locked --target "$target"

bin="target/$target/release/plantd"
# ldd exits non-zero for a static binary; what it says is the point.
deps=$(ldd "$bin" 2>&1 || true)
case "$deps" in
  *"not a dynamic executable"*|*"statically linked"*) ;;
  *) echo "build-static.sh: $bin is not static: $deps" >&2; exit 1 ;;
esac
echo "$bin: $(stat -c %s "$bin") bytes ($(du -h "$bin" | cut -f1)); ldd: $deps"
