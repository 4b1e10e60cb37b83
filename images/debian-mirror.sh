# shellcheck shell=bash
# Sourced by images/build-local.sh and images/build-odoo.sh: the Debian mirror apt uses on this
# machine (or PLANTD_DEBIAN_MIRROR), so that no host name is written into the repository.
mirror() {
  if [ -n "${PLANTD_DEBIAN_MIRROR:-}" ]; then echo "$PLANTD_DEBIAN_MIRROR"; return; fi
  local uri
  # deb822 sources (Debian 12 and later), then the one-line format.
  uri="$(grep -hs -A3 '^Types:.*deb' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -v security | head -n1 || true)"
  if [ -z "$uri" ]; then
    uri="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{ for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; exit } }' \
          | grep -v security | head -n1 || true)"
  fi
  [ -n "$uri" ] || die "cannot find a Debian mirror in apt's sources; set PLANTD_DEBIAN_MIRROR"
  echo "$uri"
}
