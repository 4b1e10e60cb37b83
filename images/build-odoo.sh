#!/usr/bin/env bash
# Builds a real Odoo image, plantd-local/odoo:MAJOR.0, from an Odoo source tree, offline, with
# Debian's packages. For machines that reach no image registry: the tests that need a real Odoo
# run whenever this image exists (and say SKIPPED when it does not).
#
#   sudo images/build-odoo.sh ODOO_SOURCE_DIR     # prints the image name last
#
# ODOO_SOURCE_DIR is an Odoo tree as Odoo publishes it (the nightly source tarball a plant would
# download, unpacked, or a git checkout): odoo-bin, odoo/, addons/, debian/control. Nothing of it
# is kept in this repository; it is read from where it is.
#
# The image has the official odoo image's interface, which plantd's stack relies on:
# - the user odoo, uid and gid 101, runs the server;
# - /etc/odoo/odoo.conf is the config (ODOO_RC), /var/lib/odoo the data (filestore, sessions),
#   /mnt/extra-addons a place for more addons; HTTP on 8069, the websocket (gevent) on 8072;
# - `odoo ARGS` or `-ARGS` run the server; the database connection comes from odoo.conf, else
#   from HOST, PORT, USER and PASSWORD; any other command runs as given.
# Odoo is laid out as its Debian package lays it out: the `odoo` package in python3's
# dist-packages, with every addon (odoo/addons and addons/) in odoo/addons.
#
# The Python packages are those of the tree's own debian/control (Depends), from the Debian
# mirror apt uses on this machine (or PLANTD_DEBIAN_MIRROR). debootstrap does not resolve virtual
# packages nor alternatives, so the first alternative Debian has is taken, and the ones Odoo's
# package gets through ${python3:Depends} are named here. Not included: wkhtmltopdf (PDF reports
# do not render). Idempotent: an image built from the same tree and package list is reused.
# Needs root (debootstrap) and a running Docker engine. About 3 minutes and 700 MB.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite="${PLANTD_DEBIAN_SUITE:-bookworm}"

die() { echo "build-odoo.sh: $*" >&2; exit 1; }
[ "$#" -eq 1 ] || die "usage: images/build-odoo.sh ODOO_SOURCE_DIR (an Odoo source tree: odoo-bin, odoo/, addons/)"
src="$(cd "$1" 2>/dev/null && pwd)" || die "$1: no such directory"
for f in odoo-bin odoo/release.py odoo/addons/base/__manifest__.py addons debian/control; do
  [ -e "$src/$f" ] || die "$src has no $f: not an Odoo source tree"
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap); run it with sudo"
command -v docker >/dev/null || die "the docker client is missing (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers; start dockerd first"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"

# The version, as Odoo's release.py gives it: version_info = (18, 0, 0, FINAL, 0, '').
major="$(sed -n 's/^version_info = (\([0-9][0-9]*\),.*/\1/p' "$src/odoo/release.py" | head -n1)"
serie_minor="$(sed -n 's/^version_info = ([0-9][0-9]*, *\([0-9][0-9]*\),.*/\1/p' "$src/odoo/release.py" | head -n1)"
[ -n "$major" ] || die "$src/odoo/release.py: no version_info; is this an Odoo tree?"
tag="plantd-local/odoo:${major}.${serie_minor:-0}"

# shellcheck source=images/debian-mirror.sh
. "$here/debian-mirror.sh"

# debian/control's Depends of the package odoo: one name per line, the first of alternatives,
# without substitution variables and comments. lxml-html-clean is inside python3-lxml before
# lxml 5.2 (bookworm has 4.9), so an alternative naming it falls to the next.
depends="$(awk '
  /^Depends:/ { on = 1; next }
  on && /^[A-Za-z-]+:/ { on = 0 }
  on && /^ / { print }
' "$src/debian/control" | sed -e 's/#.*//' -e 's/,//g' -e 's/^ *//' | grep -v '^\$' | grep -v '^$' \
  | while read -r line; do
      first="${line%%|*}"; first="${first// /}"
      case "$first" in
        python3-lxml-html-clean) echo "python3-lxml" ;;
        *) echo "$first" ;;
      esac
    done | sort -u | paste -sd, -)"
[ -n "$depends" ] || die "$src/debian/control: no Depends found for the odoo package"
# What the package gets through ${python3:Depends} (requirements.txt), and what debootstrap
# cannot resolve (python3-cffi-backend is what python3-cryptography's virtual dependency names).
extra="python3,python3-cffi-backend,python3-gevent,python3-greenlet,python3-markupsafe,python3-idna,python3-urllib3,python3-cryptography,python3-ldap,python3-pydot,python3-serial,python3-usb,python3-xlwt,python3-setuptools,ca-certificates,curl"
packages="$depends,$extra"

# The recipe: the package list and the tree (its files' names and sizes, and release.py).
tree="$( (cd "$src" && find odoo addons odoo-bin -type f -printf '%P %s\n' | sort; cat odoo/release.py) | sha256sum | cut -c1-16)"
recipe="$(printf '%s %s %s %s\n' "$suite" "$packages" "$tree" "$(sha256sum "$0" | cut -c1-16)" | sha256sum | cut -c1-16)"
have="$(docker image inspect -f '{{ index .Config.Labels "io.plantd.recipe" }}' "$tag" 2>/dev/null || true)"
if [ "$have" = "$recipe" ]; then
  echo "$tag"
  exit 0
fi

root="$(mktemp -d /var/tmp/plantd-odoo-rootfs.XXXXXX)"
trap 'rm -rf "$root" "$root.log"' EXIT
m="$(mirror)"
echo "building $tag from $src with Debian $suite from $m (debootstrap; a few minutes, most of it download)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$m" >"$root.log" 2>&1 \
  || { tail -n 20 "$root.log" >&2; die "debootstrap failed (packages: $packages)"; }

# Odoo as its Debian package lays it out: every addon inside the odoo package.
py="$(chroot "$root" python3 -c 'import sys; print("/usr/lib/python3/dist-packages")')"
mkdir -p "$root$py/odoo"
cp -a "$src/odoo/." "$root$py/odoo/"
cp -a "$src/addons/." "$root$py/odoo/addons/"
find "$root$py/odoo" -name '__pycache__' -prune -exec rm -rf {} +

# The user odoo, 101:101 as in the official image.
if chroot "$root" getent passwd 101 >/dev/null || chroot "$root" getent group 101 >/dev/null; then
  die "uid or gid 101 is taken in the Debian root filesystem; the official image's odoo user needs it"
fi
chroot "$root" groupadd --system --gid 101 odoo
chroot "$root" useradd --system --uid 101 --gid odoo --home-dir /var/lib/odoo --no-create-home --shell /usr/sbin/nologin odoo
mkdir -p "$root/etc/odoo" "$root/var/lib/odoo" "$root/mnt/extra-addons"
chown 101:101 "$root/var/lib/odoo" "$root/mnt/extra-addons"
printf '[options]\naddons_path = /mnt/extra-addons\ndata_dir = /var/lib/odoo\n' >"$root/etc/odoo/odoo.conf"
chown 101:101 "$root/etc/odoo/odoo.conf"

install -m 0755 "$here/odoo/odoo" "$root/usr/bin/odoo"
install -m 0755 "$here/odoo/entrypoint.sh" "$root/entrypoint.sh"

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar --numeric-owner -C "$root" -c . | docker import \
  --change "LABEL io.plantd.recipe=$recipe" \
  --change "LABEL io.plantd.odoo-source=$tree" \
  --change 'ENV LANG=C.UTF-8 ODOO_RC=/etc/odoo/odoo.conf PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'USER odoo' \
  --change 'VOLUME ["/var/lib/odoo", "/mnt/extra-addons"]' \
  --change 'EXPOSE 8069 8071 8072' \
  --change 'ENTRYPOINT ["/entrypoint.sh"]' \
  --change 'CMD ["odoo"]' \
  - "$tag" >/dev/null
# Odoo imports in the image, or the build is no good.
docker run --rm --entrypoint python3 "$tag" -c 'import odoo, odoo.addons.base, gevent, psycopg2, lxml, PIL; print("odoo", odoo.release.version)' >&2 \
  || die "the image was built but Odoo does not import in it"
echo "$tag"
