#!/usr/bin/env bash
# Puts plantd on a plant server or a hub server, and can be run again safely: a second run
# upgrades the program in place and keeps the data and the config.
#
#   install.sh --plant [--hub-addr HOST:9443 --token TOKEN] [--name NAME] [--binary FILE]
#   install.sh --hub --database URL [--binary FILE]
#   install.sh --uninstall [--purge]        # --purge also deletes the config and the data: on a
#                                           # plant, the stack's containers and volumes too (Odoo's database)
#
# --root DIR installs into a staging root (tests, image building): files only, no packages, no
# systemctl, no enrollment. --binary FILE installs that plantd (default: the release build of
# this checkout, or a plantd beside this script).
#
# A plant: checks the OS, installs Docker from Debian's packages when it is missing, installs
# the binary, writes /etc/plantd/plant.toml (only if there is none), enrolls with the hub (only
# if not enrolled yet), installs and starts plantd.service, and prints where the admin UI is and
# how to sign in. A hub: the binary, /etc/plantd/hub.toml (0600: it holds the database URL),
# plantd-hub.service.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mode="" root="" binary="" hub_addr="" token="" database="" name="plantd" purge=0

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --plant) mode=plant ;;
    --hub) mode=hub ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --binary) binary="${2:?--binary needs a file}"; shift ;;
    --hub-addr) hub_addr="${2:?--hub-addr needs HOST:PORT}"; shift ;;
    --token) token="${2:?--token needs the token from plantd hub token create}"; shift ;;
    --database) database="${2:?--database needs a PostgreSQL URL}"; shift ;;
    --name) name="${2:?--name needs a name}"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

[ -n "$mode" ] || die "say what to install: --plant, --hub or --uninstall (see --help)"
if [ -n "$root" ]; then
  root="$(mkdir -p "$root" && cd "$root" && pwd)"
  [ "$root" != "/" ] || root=""
fi
# Staging: files only. PLANTD_STAGING=1 stages into / itself (a container image being built).
staging=0
if [ -n "$root" ] || [ -n "${PLANTD_STAGING:-}" ]; then staging=1; fi
if [ "$staging" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or with --root DIR to stage the files)"
fi
case "$name" in
  ""|*[!a-z0-9_-]*) die "--name $name: use lowercase letters, digits, '-' and '_'" ;;
esac

# The binary lives in a directory of its own that the unit may write (fleet updates swap it
# there); /usr/local/bin/plantd links to it for the admin's commands.
bin_path="$root/usr/local/lib/plantd/plantd"
bin_link="$root/usr/local/bin/plantd"
etc="$root/etc/plantd"
units="$root/etc/systemd/system"
has_systemd() { [ "$staging" -eq 0 ] && [ -d /run/systemd/system ]; }

check_os() {
  [ "$(uname -m)" = x86_64 ] || die "this is $(uname -m); plantd's release binary is for x86_64"
  local os="${root}/etc/os-release"
  [ -r "$os" ] || os=/etc/os-release
  [ -r "$os" ] || die "no /etc/os-release: cannot tell the distribution"
  # shellcheck disable=SC1090
  . "$os"
  case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*) ;;
    *) die "this is ${PRETTY_NAME:-an unknown system}; install.sh supports Debian and its derivatives" ;;
  esac
}

find_binary() {
  if [ -z "$binary" ]; then
    for candidate in "$here/plantd" "$here/../target/release/plantd" "$here/../target/x86_64-unknown-linux-musl/release/plantd"; do
      if [ -x "$candidate" ]; then binary="$candidate"; break; fi
    done
  fi
  [ -n "$binary" ] || die "no plantd binary: give one with --binary FILE (or run installer/build-static.sh)"
  [ -x "$binary" ] || die "--binary $binary: not an executable file"
  "$binary" --version >/dev/null 2>&1 || die "--binary $binary does not run here"
}

# Replaces the binary atomically: a running plantd keeps its old file until it restarts.
install_binary() {
  mkdir -p "$(dirname "$bin_path")"
  local tmp="$bin_path.new.$$"
  cp "$binary" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$bin_path"
  # A release recorded by a fleet update names the binary it swapped in, not this one.
  rm -f "$root/var/lib/plantd/releases/current.json"
  mkdir -p "$(dirname "$bin_link")"
  ln -sfn ../lib/plantd/plantd "$bin_link"
  say "installed $("$bin_path" --version) at $bin_path (linked from $bin_link)"
}

install_unit() {
  local unit="$1"
  local source="$here/../systemd/$unit"
  [ -r "$source" ] || source="$here/$unit"
  [ -r "$source" ] || die "cannot find $unit beside install.sh or in ../systemd/"
  mkdir -p "$units"
  install -m 0644 "$source" "$units/$unit"
  say "installed $units/$unit"
}

start_unit() {
  local unit="$1"
  if has_systemd; then
    systemctl daemon-reload
    systemctl enable "$unit" >/dev/null 2>&1
    # A second run upgrades: restart picks up the new binary.
    systemctl restart "$unit"
    say "$unit is running (systemctl status $unit)"
  else
    say "no systemd here: start it with $(unit_command "$unit")"
  fi
}

unit_command() {
  case "$1" in
    plantd.service) echo "plantd up --config /etc/plantd/plant.toml" ;;
    *) echo "plantd hub --config /etc/plantd/hub.toml" ;;
  esac
}

write_plant_config() {
  local config="$etc/plant.toml"
  mkdir -p "$etc"
  if [ -e "$config" ]; then
    say "kept $config (delete it and run again for a fresh one)"
    return
  fi
  local tmp="$config.new.$$"
  sed "s/^name = \"plantd\"/name = \"$name\"/" "$here/plant.toml" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$config"
  say "wrote $config (stack name \"$name\")"
}

check_database() {
  [ -e "$etc/hub.toml" ] && return 0
  [ -n "$database" ] || die "--hub needs --database postgres://USER:PASSWORD@HOST/DB"
  case "$database" in
    postgres://*|postgresql://*) ;;
    *) die "--database $database: give a URL such as postgres://USER:PASSWORD@HOST/DB" ;;
  esac
  case "$database" in
    *'"'*|*\\*|*$'\n'*) die "--database: quotes, backslashes and line breaks cannot go into hub.toml; percent-encode them in the URL" ;;
  esac
}

write_hub_config() {
  local config="$etc/hub.toml"
  mkdir -p "$etc"
  if [ -e "$config" ]; then
    say "kept $config (delete it and run again for a fresh one)"
    return
  fi
  local tmp="$config.new.$$"
  # Created 0600 from the start: the URL holds the database password.
  (umask 077 && printf '# /etc/plantd/hub.toml, written by install.sh\ndata_dir = "/var/lib/plantd-hub"\ndatabase = "%s"\n' "$database" >"$tmp")
  mv -f "$tmp" "$config"
  say "wrote $config (mode 0600: it holds the database URL)"
}

install_plant() {
  if { [ -n "$token" ] || [ -n "$hub_addr" ]; } && { [ -z "$token" ] || [ -z "$hub_addr" ]; }; then
    die "enrolling needs both --hub-addr and --token"
  fi
  check_os
  find_binary
  if [ "$staging" -eq 0 ]; then
    # shellcheck source=installer/deps.sh
    . "$here/deps.sh"
    need dockerd docker.io
  fi
  install_binary
  write_plant_config
  mkdir -p "$root/var/lib/plantd"
  chmod 0700 "$root/var/lib/plantd"
  if [ -n "$token" ] || [ -n "$hub_addr" ]; then
    if [ -e "$root/var/lib/plantd/enrollment.json" ]; then
      say "already enrolled ($root/var/lib/plantd/enrollment.json); the token is not used"
    elif [ "$staging" -eq 1 ]; then
      say "staging root: not enrolling (run plantd enroll on the server)"
    else
      "$bin_path" enroll --config "$etc/plant.toml" --hub "$hub_addr" --token "$token"
    fi
  fi
  install_unit plantd.service
  start_unit plantd.service
  local port
  port="$(sed -n 's/^listen = "[^"]*:\([0-9]*\)"$/\1/p' "$etc/plant.toml" | head -n 1)"
  say "admin UI: https://$(hostname -f 2>/dev/null || hostname):${port:-8443}/"
  local code="$root/var/lib/plantd/admin-setup-code"
  if has_systemd; then
    for _ in $(seq 1 20); do [ -e "$code" ] && break; sleep 0.5; done
  fi
  if [ -r "$code" ]; then
    say "first sign-in: create the first admin in the browser with setup code $(cat "$code")"
  else
    say "sign in with an existing admin, or add one: printf '%s\\n' \"\$PASSWORD\" | plantd admin add NAME --role admin"
  fi
}

install_hub() {
  check_os
  find_binary
  check_database
  install_binary
  write_hub_config
  install_unit plantd-hub.service
  start_unit plantd-hub.service
  say "hub: enroll plants with tokens from: plantd hub token create --plant NAME --config /etc/plantd/hub.toml"
}

uninstall() {
  for unit in plantd.service plantd-hub.service; do
    if has_systemd && systemctl list-unit-files "$unit" >/dev/null 2>&1; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
    rm -f "$units/$unit"
  done
  has_systemd && systemctl daemon-reload
  if [ "$purge" -eq 1 ]; then
    if [ "$staging" -eq 0 ] && [ -x "$bin_path" ] && [ -e "$etc/plant.toml" ] && command -v docker >/dev/null 2>&1; then
      # The stack's containers and volumes hold the plant's Odoo data: purge means all of it.
      "$bin_path" stack down --delete-volumes --yes --config "$etc/plant.toml" || true
    fi
    rm -rf "$etc" "$root/var/lib/plantd" "$root/var/lib/plantd-hub"
    say "removed the program, its config and its data"
  else
    say "removed the program; kept $etc and the data in $root/var/lib/plantd (--purge deletes them)"
  fi
  rm -f "$bin_link"
  rm -rf "$(dirname "$bin_path")"
}

case "$mode" in
  plant) install_plant ;;
  hub) install_hub ;;
  uninstall) uninstall ;;
esac
