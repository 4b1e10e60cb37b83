#!/bin/sh
# The entrypoint of the image images/build-odoo.sh builds, with the official odoo image's
# interface: `odoo ARGS` (or just `-ARGS`) runs the server with the config in ODOO_RC; each of
# the database's host, port, user and password comes from that file, else from HOST, PORT, USER
# and PASSWORD. Any other command runs as given.
set -e

conf="${ODOO_RC:-/etc/odoo/odoo.conf}"

# Whether the config file sets KEY (a line "KEY = value").
in_conf() {
    [ -r "$conf" ] && grep -Eq "^[[:space:]]*$1[[:space:]]*=[[:space:]]*[^[:space:]]" "$conf"
}

db_args() {
    in_conf db_host || printf -- '--db_host=%s\n' "${HOST:-db}"
    in_conf db_port || printf -- '--db_port=%s\n' "${PORT:-5432}"
    in_conf db_user || printf -- '--db_user=%s\n' "${USER:-odoo}"
    in_conf db_password || printf -- '--db_password=%s\n' "${PASSWORD:-odoo}"
}

case "$1" in
    odoo)
        shift
        ;;
    -*)
        ;;
    *)
        exec "$@"
        ;;
esac
# The arguments come one a line; none of them holds a newline.
old_ifs="$IFS"
IFS='
'
# shellcheck disable=SC2046
set -- "$@" $(db_args)
IFS="$old_ifs"
exec odoo "$@"
