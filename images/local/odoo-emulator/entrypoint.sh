#!/bin/sh
# The Odoo emulator's entrypoint, shaped like the official odoo image's: "odoo" starts the server
# (as PID 1, so that it gets the container's signals; as the user odoo, which the image runs as,
# or dropping to it when started as root), anything else runs as given.
set -e

if [ "$1" = "odoo" ]; then
    shift
    if [ "$(id -u)" = 0 ]; then
        chown odoo /var/lib/odoo
        exec setpriv --reuid=odoo --regid=odoo --init-groups \
            python3 -m odoo_emulator --config /etc/odoo/odoo.conf "$@"
    fi
    exec python3 -m odoo_emulator --config /etc/odoo/odoo.conf "$@"
fi

exec "$@"
