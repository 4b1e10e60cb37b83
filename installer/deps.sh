# Sourced by installer/run.sh and tests/run.sh: installs a missing tool from Debian's packages.
# need COMMAND DEBIAN-PACKAGE
_plantd_apt_updated=0
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "$1 is missing; install the Debian package $2 as root" >&2; return 1; }
    sudo="sudo"
  fi
  if [ "$_plantd_apt_updated" -eq 0 ]; then
    $sudo apt-get update -qq
    _plantd_apt_updated=1
  fi
  echo "installing $2 (for $1)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
