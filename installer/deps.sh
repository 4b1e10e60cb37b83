# shellcheck shell=bash
# Sourced by installer/run.sh and tests/run.sh: installs a missing tool from Debian's packages.
# need COMMAND DEBIAN-PACKAGE (the package is installed when the command is missing)
# need_package DEBIAN-PACKAGE (for a package without a command, such as python3-venv)
_plantd_apt_updated=0
need_package() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" && return 0
  need "/nonexistent/$1" "$1"
}
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

# Makes sure a Docker engine answers: installs Debian's docker.io if dockerd is missing, then
# starts the engine (through systemd where it runs, else dockerd in the background).
need_docker_engine() {
  need dockerd docker.io
  docker info >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "the Docker engine is not running; start it as root (systemctl start docker)" >&2
    return 1
  fi
  if [ -d /run/systemd/system ] && systemctl start docker >/dev/null 2>&1; then
    :
  else
    echo "starting dockerd (log: /var/log/plantd-dockerd.log)"
    nohup dockerd >/var/log/plantd-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "the Docker engine did not start; see /var/log/plantd-dockerd.log" >&2
  return 1
}
