"""The emulated server: services behind /jsonrpc and the other JSON-RPC routes."""

import re
from contextlib import contextmanager

import psycopg2
import psycopg2.errors

from .constants import _users_logger
from .database import Database
from .errors import AccessDenied, AccessError, NotFound, UserError, serialize_exception
from .models import Env
from .rpc import call_kw


class App:
    """The emulated server: its configuration, its database and the RPC services."""

    def __init__(self, config, version):
        match = re.match(r'(?:saas~)?(\d+)\.(\d+)', version)
        if not match:
            raise SystemExit(f'EMULATED_ODOO_VERSION must look like "19.0", not {version!r}')
        self.config, self.db = config, Database(config)
        self.version = version
        self.major = int(match.group(1))
        self.version_info = [self.major, int(match.group(2)), 0, 'final', 0, '']
        self.serie = match.group(0)
        self.jsonrpc_routes = {'/jsonrpc': self.dispatch_rpc, '/web/webclient/version_info': self.exp_version,
                               '/web/database/list': self.list_dbs}

    @contextmanager
    def env(self):
        with self.db.transaction() as cr:
            env = Env(self, cr)
            yield env
        for callback in env.after_commit:
            callback()

    def jsonrpc_error(self, exc):
        """The 'error' member of odoo.http.JsonRPCDispatcher.handle_error; its code became 0 in Odoo 19."""
        error = {'code': 0 if self.major >= 19 else 200, 'message': 'Odoo Server Error',
                 'data': serialize_exception(exc)}
        if isinstance(exc, NotFound):
            error.update(code=404, message='404: Not Found')
        return error

    def dispatch_rpc(self, service, method, args):
        """odoo.http.dispatch_rpc, the route /jsonrpc."""
        services = {
            'common': {'version': self.exp_version, 'login': self.exp_login,
                       'authenticate': self.exp_authenticate},
            'object': {'execute_kw': self.exp_execute_kw},
            'db': {'list': self.list_dbs, 'server_version': lambda: self.version},
        }[service]
        if method not in services:
            raise NameError(f'Method not available {method}' if service == 'object' else f'Method not found: {method}')
        return services[method](*args)

    def exp_version(self):
        return {'server_version': self.version, 'server_version_info': self.version_info,
                'server_serie': self.serie, 'protocol_version': 1}

    def exp_login(self, db, login, password):
        return self.exp_authenticate(db, login, password, None)

    def exp_authenticate(self, db, login, password, user_agent_env):
        self._check_db(db)
        with self.env() as env:
            uid = env.authenticate(login, password)
        if uid:
            _users_logger.info('Login successful for db:%s login:%s', db, login)
        else:
            _users_logger.info('Login failed for db:%s login:%s', db, login)
        return uid

    def exp_execute_kw(self, db, uid, password, model, method, args, kw=None):
        """odoo.service.model: check the credentials (security.check), then execute_kw."""
        self._check_db(db)
        with self.env() as env:
            if not env.check_credentials(int(uid), password):
                raise AccessDenied()
            env.uid = int(uid)
            if isinstance(method, str) and method.startswith('_'):  # odoo.models.check_method_name
                raise AccessError(f"Private methods (such as '{model}.{method}') cannot be called remotely.")
            try:
                records = env[model]
            except KeyError:
                raise UserError(f"Object {model} doesn't exist") from None
            return call_kw(records, method, args, kw or {})

    def list_dbs(self):
        """odoo.service.db.list_dbs, for /web/database/list and db.list."""
        if not self.config.list_db:
            raise AccessDenied()
        return [self.config.db_name]

    def _check_db(self, db):
        """The emulator serves one database; any other does not exist."""
        if db != self.config.db_name:
            raise psycopg2.OperationalError(f'connection to server failed: FATAL:  database "{db}" does not exist')
