"""`python3 -m odoo_emulator --config odoo.conf`: starts the servers, as `odoo` does."""

import argparse
import os
import signal
import sys
import threading

from .app import App
from .config import load_config, setup_logging
from .constants import _logger, _server_logger
from .server import Server

def main(argv=None):
    parser = argparse.ArgumentParser(prog='odoo_emulator', description='A stand-in for Odoo, for tests.')
    parser.add_argument('-c', '--config', default='/etc/odoo/odoo.conf', help="Odoo's configuration file")
    parser.add_argument('-d', '--database', help='the database (overrides db_name)')
    parser.add_argument('-i', '--init', help='modules to install; the emulator has none and creates its tables')
    parser.add_argument('--without-demo', help='accepted as Odoo does; the emulator has no demo data')
    parser.add_argument('--stop-after-init', action='store_true',
                        help='create the database and its tables, then exit (as `odoo -i base --stop-after-init`)')
    args, ignored = parser.parse_known_args(argv)
    setup_logging()
    if ignored:
        _logger.warning('Ignoring the arguments %s: the emulator reads only its configuration file', ignored)
    config = load_config(args.config, os.environ)
    if args.database:
        config.db_name = args.database
    app = App(config, os.environ.get('EMULATED_ODOO_VERSION', '19.0'))
    if args.stop_after_init:
        _logger.info('Initializing database %s, then stopping', config.db_name)
        app.db.initialize_when_up(threading.Event())
        return 0
    _logger.info('Odoo emulator, emulating Odoo version %s', app.version)
    _logger.info('Using configuration file at %s', os.path.abspath(args.config))
    _logger.info('database: %s@%s:%s', config.db_user or 'default', config.db_host or 'default', config.db_port)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    # With workers, Odoo's websocket is served by the gevent process only; without, by the HTTP server.
    servers = [Server(config.http_port, app, websocket=config.workers == 0)]
    _server_logger.info('HTTP service (werkzeug) running on 0.0.0.0:%s', config.http_port)
    if config.workers > 0:
        servers.append(Server(config.gevent_port, app, websocket=True))
        _server_logger.info('Evented Service (longpolling) running on 0.0.0.0:%s', config.gevent_port)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True).start()
    threading.Thread(target=app.db.initialize_when_up, args=(stop,), daemon=True).start()

    stop.wait()
    _server_logger.info('Initiating shutdown')
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0

if __name__ == '__main__':
    sys.exit(main())
