#!/bin/sh
# Runs Redis as PID 1 under the redis user, with its data in /data.
set -eu
if [ "${1:-}" = redis-server ]; then
  chown redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups "$@" --dir /data
fi
exec "$@"
