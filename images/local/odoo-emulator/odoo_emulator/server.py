"""HTTP: the routes Odoo serves, with its status codes and error bodies."""

import functools
import html
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2
import psycopg2.errors

from .constants import ADMIN_UID, JSON2_PATH, JSON_MIMETYPES, _http_logger, _logger, _websocket_logger, _werkzeug_logger
from .errors import BadRequest, HTTPException, InternalServerError, MethodNotAllowed, NotFound, Unauthorized, UserError, log_exception, serialize_exception
from .rpc import call_json2, filter_kwargs
from .websocket import WebSocket, bus_reply, websocket_accept


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port, app, websocket):
        super().__init__(('0.0.0.0', port), Handler)
        self.app, self.port, self.websocket = app, port, websocket


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'odoo-emulator'

    def _handle(self):
        started = time.monotonic()
        threading.current_thread().dbname = self.server.app.config.db_name
        url = urlsplit(self.path)
        self.url_path, self.query = url.path, parse_qs(url.query)
        self.remote_addr, self.scheme, self.host = self._proxy_fix()
        try:
            self.body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            status = self._dispatch()
        except Exception as exc:  # a last resort: answer 500, never drop the connection
            log_exception(exc)
            status = self._send_http_error(InternalServerError())
        _werkzeug_logger.info('%s - - [%s] "%s" %s - %.3f', self.remote_addr, self.log_date_time_string(),
                              self.requestline, status, time.monotonic() - started)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def log_request(self, code='-', size='-'):
        pass  # _handle logs every request once it is answered

    def log_message(self, fmt, *args):
        _werkzeug_logger.info('%s - - [%s] %s', self.address_string(), self.log_date_time_string(), fmt % args)

    def _proxy_fix(self):
        """werkzeug's ProxyFix(x_for=1, x_proto=1, x_host=1), which Odoo applies in proxy_mode
        when X-Forwarded-Host is present: the last value of each header is trusted."""
        remote_addr, scheme, host = self.client_address[0], 'http', self.headers.get('Host', '')
        if self.server.app.config.proxy_mode and self.headers.get('X-Forwarded-Host'):
            def last(name, default):
                return self.headers.get(name, '').split(',')[-1].strip() or default
            remote_addr = last('X-Forwarded-For', remote_addr)
            scheme = last('X-Forwarded-Proto', scheme)
            host = last('X-Forwarded-Host', host)
        return remote_addr, scheme, host

    def _mimetype(self):
        return self.headers.get('Content-Type', '').split(';')[0].strip().lower()

    def _dispatch(self):
        app, path = self.server.app, self.url_path
        if path == '/web/health':
            return self._health()
        if path == '/web/emulator/request':
            return self._send_json(200, {'host': self.host, 'scheme': self.scheme, 'remote_addr': self.remote_addr,
                                         'headers': dict(self.headers.items()), 'port': self.server.port})
        if path == '/websocket':
            return self._websocket()
        if path == '/web/database/manager':
            return self._database_manager()
        if path == '/web/login':
            return self._login_page()
        if path in app.jsonrpc_routes:
            return self._jsonrpc(app.jsonrpc_routes[path])
        match = JSON2_PATH.fullmatch(path)
        if match and app.major >= 19 and self.headers.get('X-Odoo-Database', app.config.db_name) == app.config.db_name:
            return self._json2(*match.groups())
        return self._not_found()

    # -- responses ------------------------------------------------------------------------------

    def _send(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status

    def _send_json(self, status, payload, headers=()):
        return self._send(status, json.dumps(payload).encode(), 'application/json', headers)

    def _send_http_error(self, exc):
        """werkzeug's HTML error page."""
        page = (f'<!doctype html>\n<html lang=en>\n<title>{exc.code} {exc.name}</title>\n'
                f'<h1>{exc.name}</h1>\n<p>{html.escape(exc.description)}</p>\n')
        return self._send(exc.code, page.encode(), 'text/html; charset=utf-8', exc.headers)

    def _not_found(self):
        """No route: a JSON-RPC error for a JSON request, else werkzeug's page (as Odoo does)."""
        if self._mimetype() in JSON_MIMETYPES:
            return self._send_json(200, {'jsonrpc': '2.0', 'id': None,
                                         'error': self.server.app.jsonrpc_error(NotFound())})
        return self._send_http_error(NotFound())

    def _refuse_content_type(self, route_type):
        """Odoo's check that the request's Content-Type fits the route's type: a 400 page if not."""
        compatible = ['http']
        if self._mimetype() in JSON_MIMETYPES:
            compatible.append('jsonrpc')
        if self._mimetype() == 'application/json':
            compatible.append('/json/2/rpc')
        if route_type in compatible:
            return None
        return self._send_http_error(BadRequest(
            f'Request inferred type is compatible with {compatible} but {route_type!r} was expected.'))

    # -- routes ---------------------------------------------------------------------------------

    def _health(self):
        """addons/web/controllers/home.py Home.health; any non-empty db_server_status checks the server."""
        info, status = {'status': 'pass'}, 200
        if self.query.get('db_server_status', [''])[0]:
            reachable = self.server.app.db.server_reachable()
            info['db_server_status'] = reachable
            if not reachable:
                info['status'], status = 'fail', 500
        return self._send_json(status, info, [('Cache-Control', 'no-store')])

    def _login_page(self):
        """Odoo's /web/login loads the database's registry: a database it cannot serve (a foreign
        or broken schema) answers 500, as Odoo does when the registry fails to load."""
        app = self.server.app
        try:
            app.db.initialize()
            with app.db.transaction() as cr:
                cr.execute('SELECT model, id, vals, create_date, write_date FROM emulator_record LIMIT 1')
                cr.execute('SELECT id, login, password FROM res_users WHERE id = %s', (ADMIN_UID,))
                if cr.fetchone() is None:
                    raise psycopg2.DataError('the admin user is missing')
        except psycopg2.Error as exc:
            _logger.error('the registry of %s failed to load: %s', app.config.db_name, ' '.join(str(exc).split()))
            return self._send(500, b'<html><body>Internal Server Error</body></html>', 'text/html; charset=utf-8')
        page = b'<!DOCTYPE html>\n<html><head><title>Odoo</title></head><body><form class="oe_login_form" method="post"></form></body></html>\n'
        return self._send(200, page, 'text/html; charset=utf-8')

    def _database_manager(self):
        """With list_db off, Odoo's page shows only this alert (HTTP 200); the emulator has no manager."""
        if self.server.app.config.list_db:
            message = f'The emulator has no database manager; it serves {self.server.app.config.db_name}.'
            div = f'<div class="alert alert-info">{html.escape(message)}</div>'
        else:
            div = ('<div class="alert alert-danger text-center">'
                   'The database manager has been disabled by the administrator</div>')
        page = f'<!DOCTYPE html>\n<html><head><title>Odoo</title></head><body>{div}</body></html>\n'
        return self._send(200, page.encode(), 'text/html; charset=utf-8')

    def _jsonrpc(self, endpoint):
        """odoo.http.JsonRPCDispatcher."""
        if (refused := self._refuse_content_type('jsonrpc')) is not None:
            return refused
        try:
            request = json.loads(self.body)
        except ValueError:
            return self._send(400, b'Invalid JSON data', 'text/html; charset=utf-8')
        if not isinstance(request, dict):
            return self._send(400, b'Invalid JSON-RPC data', 'text/html; charset=utf-8')
        response = {'jsonrpc': '2.0', 'id': request.get('id')}
        try:
            params = dict(request.get('params') or {})
            result = endpoint(**filter_kwargs(endpoint, params))
            if result is not None:  # Odoo leaves 'result' out when a method returned None
                response['result'] = result
        except Exception as exc:
            log_exception(exc)
            response['error'] = self.server.app.jsonrpc_error(exc)
        return self._send_json(200, response)

    def _json2(self, model, method):
        """addons/web/controllers/json2.py: bearer authentication, then the method with named arguments."""
        if (refused := self._refuse_content_type('/json/2/rpc')) is not None:
            return refused
        app = self.server.app
        try:
            with app.env() as env:
                env.uid = self._bearer_uid(env)
                kwargs = self._json2_params()
                if self.command != 'POST':
                    raise MethodNotAllowed()
                ids = kwargs.pop('ids', ())
                context = kwargs.pop('context', None)
                try:
                    records = env[model]
                except KeyError:
                    raise NotFound(f'the model {model!r} does not exist') from None
                result = call_json2(records, method, ids, kwargs, context)
            return self._send_json(200, result)
        except Exception as exc:
            log_exception(exc)
            if isinstance(exc, UserError):
                return self._send_json(exc.http_status, serialize_exception(exc))
            if isinstance(exc, HTTPException):
                body = serialize_exception(exc, message=exc.description, arguments=(exc.description, exc.code))
                return self._send_json(exc.code, body, exc.headers)
            return self._send_json(500, serialize_exception(exc))

    def _bearer_uid(self, env):
        """ir.http._auth_method_bearer, without sessions: the uid of the API key."""
        challenge = [('WWW-Authenticate', 'Bearer')]
        match = re.match(r'^bearer\s+(.+)$', self.headers.get('Authorization', ''), re.IGNORECASE)
        if not match:
            raise Unauthorized('User not authenticated, use the "Authorization" header', challenge)
        uid = env.apikey_uid(match.group(1).strip())
        if not uid:
            raise Unauthorized('Invalid apikey', challenge)
        return uid

    def _json2_params(self):
        if not self.body:
            return {}
        try:
            params = json.loads(self.body)
        except ValueError as exc:
            raise BadRequest(f'could not parse the body as json: {exc.args[0]}') from exc
        if not isinstance(params, dict):
            raise BadRequest('could not parse the body, expecting a json object')
        return params

    def _websocket(self):
        """addons/bus/controllers/websocket.py: the handshake, then the bus on the evented port. Elsewhere,
        the handshake fails as Odoo's does in multi-worker mode, where only the gevent port has a socket."""
        headers = self.headers
        if headers.get('Upgrade', '').lower() != 'websocket' or 'upgrade' not in headers.get('Connection', '').lower():
            return self._send_http_error(BadRequest())  # werkzeug's WebsocketMismatch
        try:
            accept = websocket_accept(headers)
        except HTTPException as exc:
            _websocket_logger.error('%s', exc)
            return self._send_http_error(exc)
        if not self.server.websocket:
            error = RuntimeError("Couldn't bind the websocket. Is the connection opened on the evented port"
                                 f' ({self.server.app.config.gevent_port})?')
            _http_logger.error('Exception during request handling.', exc_info=(RuntimeError, error, None))
            return self._send_http_error(InternalServerError())
        self.send_response(101)
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        WebSocket(self.rfile, self.wfile).serve(functools.partial(bus_reply, port=self.server.port))
        return 101
