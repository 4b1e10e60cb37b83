#!/usr/bin/env python3
"""A stand-in for Odoo's external interfaces, for plantd's tests (see README.md beside this file).

It answers the requests plantd makes of Odoo -- /web/health, JSON-RPC (/jsonrpc and
/web/webclient/version_info), Odoo 19's JSON-2 API (/json/2/<model>/<method>) and the bus
websocket -- with Odoo's shapes, status codes and error formats. It has the models of a Community
Odoo with stock and mrp and no others; their records are mostly schemaless, kept in PostgreSQL,
attachments in an Odoo-style filestore. It knows a few required fields, datetimes, and just enough
stock and mrp logic for plantd's shipped kinds (transfers, manufacturing orders, time logs), plus
one constraint. Only the standard library and psycopg2 are used.
"""
import argparse
import base64
import configparser
import functools
import hashlib
import hmac
import html
import inspect
import json
import logging
import mimetypes
import os
import re
import signal
import struct
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extras import Json

_logger = logging.getLogger('odoo')
_server_logger = logging.getLogger('odoo.service.server')
_sql_logger = logging.getLogger('odoo.sql_db')
_http_logger = logging.getLogger('odoo.http')
_users_logger = logging.getLogger('odoo.addons.base.models.res_users')
_attachment_logger = logging.getLogger('odoo.addons.base.models.ir_attachment')
_websocket_logger = logging.getLogger('odoo.addons.bus.websocket')
_werkzeug_logger = logging.getLogger('werkzeug')

ADMIN_UID = 2  # Odoo's admin user; uid 1 is OdooBot
SCHEMA_LOCK = 0x6F646F6F  # the advisory lock that serialises schema creation ("odoo")
QUANTITY_FIELDS = ('quantity', 'product_qty', 'product_uom_qty', 'qty_producing')
# Numbers that load() converts from text, as Odoo's import does for float fields.
FLOAT_FIELDS = (*QUANTITY_FIELDS, 'qty_produced', 'duration')
DATETIME_FORMAT = '%Y-%m-%d %H:%M:%S'  # odoo.tools.DEFAULT_SERVER_DATETIME_FORMAT

# The models of a Community Odoo with stock and mrp installed, with their descriptions (what
# ir.model holds). Any other model does not exist, as in Odoo.
MODEL_DESCRIPTIONS = {
    'res.partner': 'Contact', 'res.users': 'User', 'res.company': 'Companies', 'res.currency': 'Currency',
    'res.country': 'Country', 'product.product': 'Product Variant', 'product.template': 'Product',
    'product.category': 'Product Category', 'uom.uom': 'Product Unit of Measure',
    'uom.category': 'Product UoM Categories', 'stock.move': 'Stock Move',
    'stock.move.line': 'Product Moves (Stock Move Line)', 'stock.picking': 'Transfer',
    'stock.picking.type': 'Picking Type', 'stock.location': 'Inventory Locations', 'stock.warehouse': 'Warehouse',
    'stock.quant': 'Quants', 'stock.quant.package': 'Packages', 'stock.lot': 'Lot/Serial',
    'stock.route': 'Inventory Routes', 'stock.rule': 'Stock Rule', 'stock.scrap': 'Scrap',
    'stock.package_level': 'Stock Package Level', 'stock.backorder.confirmation': 'Backorder Confirmation',
    'mrp.production': 'Manufacturing Order', 'mrp.workorder': 'Work Order', 'mrp.workcenter': 'Work Center',
    'mrp.workcenter.productivity': 'Workcenter Productivity Log',
    'mrp.workcenter.productivity.loss': 'Workcenter Productivity Losses',
    'mrp.workcenter.productivity.loss.type': 'MRP Workorder productivity losses',
    'mrp.bom': 'Bill of Material', 'mrp.bom.line': 'Bill of Material Line',
    'mrp.routing.workcenter': 'Work Center Usage',
    'mrp.production.backorder': 'Wizard to mark as done or create back order', 'mrp.unbuild': 'Unbuild Order',
    'ir.model': 'Models', 'ir.model.fields': 'Fields', 'ir.model.data': 'Model Data', 'ir.attachment': 'Attachment',
    'ir.config_parameter': 'System Parameter', 'ir.sequence': 'Sequence', 'mail.message': 'Message',
    'resource.calendar': 'Resource Working Time',
}
# Required fields, in the order of their table's columns (PostgreSQL reports the first NOT NULL
# violation), and the labels Odoo's messages use (the field's string).
REQUIRED_FIELDS = {
    'stock.move': ('name', 'product_id', 'location_id', 'location_dest_id'),
    'stock.picking': ('picking_type_id',),
    'mrp.workcenter.productivity': ('workcenter_id', 'loss_id', 'date_start'),
}
FIELD_LABELS = {
    ('stock.move', 'name'): 'Description', ('stock.move', 'product_id'): 'Product',
    ('stock.move', 'location_id'): 'Source Location', ('stock.move', 'location_dest_id'): 'Intermediate Location',
    ('stock.move', 'product_uom_qty'): 'Demand', ('stock.move', 'quantity'): 'Quantity',
    ('stock.move', 'date'): 'Date Scheduled', ('stock.picking', 'picking_type_id'): 'Operation Type',
    ('mrp.workcenter.productivity', 'workcenter_id'): 'Work Center',
    ('mrp.workcenter.productivity', 'loss_id'): 'Loss Reason',
    ('mrp.workcenter.productivity', 'date_start'): 'Start Date',
    ('mrp.workcenter.productivity', 'date_end'): 'End Date',
}
MAGIC_FIELDS = ('id', 'create_date', 'write_date')
# The relational fields fields_get tells of (type, the model referred to), as Odoo 18 and 19 define
# them; the emulator stores any field of any model, so fields_get cannot say more.
RELATIONAL_FIELDS = {
    'res.partner': {'parent_id': ('many2one', 'res.partner'), 'child_ids': ('one2many', 'res.partner'),
                    'user_id': ('many2one', 'res.users'), 'user_ids': ('one2many', 'res.users'),
                    'company_id': ('many2one', 'res.company'),
                    'category_id': ('many2many', 'res.partner.category'),
                    'country_id': ('many2one', 'res.country')},
    'res.users': {'partner_id': ('many2one', 'res.partner'), 'company_id': ('many2one', 'res.company'),
                  'company_ids': ('many2many', 'res.company'), 'groups_id': ('many2many', 'res.groups')},
    'res.groups': {'users': ('many2many', 'res.users'), 'implied_ids': ('many2many', 'res.groups')},
    'stock.move': {'product_id': ('many2one', 'product.product'), 'location_id': ('many2one', 'stock.location'),
                   'location_dest_id': ('many2one', 'stock.location'), 'picking_id': ('many2one', 'stock.picking')},
    'stock.picking': {'move_ids': ('one2many', 'stock.move'), 'partner_id': ('many2one', 'res.partner'),
                      'picking_type_id': ('many2one', 'stock.picking.type')},
    'stock.lot': {'product_id': ('many2one', 'product.product'), 'company_id': ('many2one', 'res.company')},
}
JSON_MIMETYPES = ('application/json', 'application/json-rpc')
WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
WEBSOCKET_HEADERS = ('connection', 'host', 'origin', 'sec-websocket-key', 'sec-websocket-version', 'upgrade')
WEBSOCKET_MAX_MESSAGE = 2 ** 20  # Odoo's bus closes with 1009 above 1 MiB
JSON2_PATH = re.compile(r'/json/2/([^/]+)/([^/]+)')

SCHEMA = """
CREATE TABLE IF NOT EXISTS emulator_sequence (model text PRIMARY KEY, last_id bigint NOT NULL);
CREATE TABLE IF NOT EXISTS emulator_record (
    model text NOT NULL,
    id bigint NOT NULL,
    vals jsonb NOT NULL DEFAULT '{}',
    create_date timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (model, id));
CREATE TABLE IF NOT EXISTS ir_model_data (
    id serial PRIMARY KEY,
    module text NOT NULL,
    name text NOT NULL,
    model text NOT NULL,
    res_id bigint NOT NULL,
    UNIQUE (module, name));
CREATE TABLE IF NOT EXISTS res_users (id integer PRIMARY KEY, login text NOT NULL UNIQUE, password text NOT NULL);
CREATE TABLE IF NOT EXISTS res_users_apikeys (
    id serial PRIMARY KEY,
    name text NOT NULL,
    user_id integer NOT NULL REFERENCES res_users (id),
    key text NOT NULL UNIQUE);
"""
# As Odoo's base module does, the admin user is created with the password 'admin' (once: a
# password set later, by plantd or anyone, stays). Emulator-only shortcut: admin_passwd is also
# an API key of the admin user.
SEED = """
INSERT INTO res_users (id, login, password) VALUES (%(uid)s, 'admin', 'admin')
    ON CONFLICT (id) DO NOTHING;
DELETE FROM res_users_apikeys WHERE name = 'admin_passwd';
INSERT INTO res_users_apikeys (name, user_id, key) VALUES ('admin_passwd', %(uid)s, %(password)s)
    ON CONFLICT (key) DO NOTHING;
"""


def verify_password(password, stored):
    """passlib's pbkdf2_sha512 verify ($pbkdf2-sha512$ROUNDS$SALT$CHECKSUM, "ab64": base64 with
    '.' for '+', no padding), or a plaintext comparison, as Odoo's CryptContext does."""
    if not stored.startswith('$pbkdf2-sha512$'):
        return not stored.startswith('$') and stored == password
    try:
        rounds, salt, checksum = stored.split('$')[2:]
        def ab64(text):
            text = text.replace('.', '+')
            return base64.b64decode(text + '=' * (-len(text) % 4))
        derived = hashlib.pbkdf2_hmac('sha512', password.encode(), ab64(salt), int(rounds))
        return hmac.compare_digest(derived, ab64(checksum))
    except (ValueError, TypeError):
        return False


# --- Errors, named after Odoo's and werkzeug's so that they serialize like theirs ---------------

class UserError(Exception):
    http_status = 422


class AccessDenied(UserError):
    http_status = 403

    def __init__(self, message='Access Denied'):
        super().__init__(message)


class AccessError(UserError):
    http_status = 403


class MissingError(UserError):
    http_status = 404


class ValidationError(UserError):
    pass


class HTTPException(Exception):
    """A werkzeug HTTP error: a status code, a description and extra response headers."""
    code = 500
    description = ('The server encountered an internal error and was unable to complete your request.'
                   ' Either the server is overloaded or there is an error in the application.')

    def __init__(self, description=None, headers=()):
        super().__init__()
        self.description = description or type(self).description
        self.headers = list(headers)

    @property
    def name(self):
        return HTTPStatus(self.code).phrase

    def __str__(self):
        return f'{self.code} {self.name}: {self.description}'


class BadRequest(HTTPException):
    code, description = 400, 'The browser (or proxy) sent a request that this server could not understand.'


class Unauthorized(HTTPException):
    code, description = 401, ("The server could not verify that you are authorized to access the URL requested."
                              " You either supplied the wrong credentials (e.g. a bad password), or your browser"
                              " doesn't understand how to supply the credentials required.")


class NotFound(HTTPException):
    code, description = 404, ('The requested URL was not found on the server. If you entered the URL manually'
                              ' please check your spelling and try again.')


class MethodNotAllowed(HTTPException):
    code, description = 405, 'The method is not allowed for the requested URL.'


class UnprocessableEntity(HTTPException):
    code, description = 422, 'The request was well-formed but was unable to be followed due to semantic errors.'


class UpgradeRequired(HTTPException):
    code, description = 426, 'Wrong websocket version was given during the handshake'


class InternalServerError(HTTPException):
    pass


for _cls in (UserError, AccessDenied, AccessError, MissingError, ValidationError):
    _cls.__module__ = 'odoo.exceptions'
for _cls in (HTTPException, BadRequest, Unauthorized, NotFound, MethodNotAllowed, UnprocessableEntity,
             InternalServerError):
    _cls.__module__ = 'werkzeug.exceptions'
UpgradeRequired.__module__ = 'odoo.addons.bus.websocket'


class NotNullViolation(Exception):
    """A required field left empty: PostgreSQL's NOT NULL violation, which Odoo turns into a
    ValidationError over RPC (odoo/service/model.py _as_validation_error) and into a message of its
    own in load() (odoo/models.py convert_pgerror_not_null)."""

    def __init__(self, model, field, label):
        super().__init__(model, field, label)
        self.model, self.field, self.label = model, field, label

    def as_validation_error(self):
        return ValidationError(
            'The operation cannot be completed:\n'
            '- Create/update: a mandatory field is not set.\n'
            '- Delete: another model requires the record being deleted. If possible, archive it instead.\n\n'
            f'Model: {MODEL_DESCRIPTIONS[self.model]} ({self.model})\n'
            f'Field: {self.label} ({self.field})\n')

    def load_message(self):
        return f"Missing required value for the field '{self.label}' ({self.field})"


def is_datetime_field(field):
    """The fields the emulator treats as datetimes, by name: date, date_*, *_date (not create_date
    and write_date, which it sets itself)."""
    return field not in MAGIC_FIELDS and (field == 'date' or field.startswith('date_') or field.endswith('_date'))


def to_datetime(value):
    """fields.Datetime.to_datetime: 'YYYY-MM-DD HH:MM:SS', or a prefix of it ('YYYY-MM-DD');
    anything else raises ValueError (a TypeError for what is not text), as in Odoo."""
    return datetime.strptime(value, DATETIME_FORMAT[:len(value) - 2])


def serialize_exception(exc, message=None, arguments=None):
    """odoo.http.serialize_exception: the error's 'data' in JSON-RPC, the whole body in JSON-2."""
    cls = type(exc)
    return {
        'name': f'{cls.__module__}.{cls.__name__}',
        'message': str(exc) if message is None else message,
        'arguments': list(exc.args if arguments is None else arguments),
        'context': {},
        'debug': ''.join(traceback.format_exception(exc)),
    }


def log_exception(exc):
    """Logs a failed request the way odoo.http.Application does."""
    if isinstance(exc, HTTPException):
        return
    if isinstance(exc, UserError):
        _http_logger.warning('%s', exc)
    else:
        _http_logger.error('Exception during request handling.', exc_info=exc)


# --- Configuration and logging ------------------------------------------------------------------

@dataclass
class Config:
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    db_name: str
    admin_passwd: str
    proxy_mode: bool
    workers: int
    http_port: int
    gevent_port: int
    list_db: bool
    data_dir: str


# Like the official odoo image's entrypoint: the config file's value, else the environment's.
DB_ENVIRONMENT = {'db_host': ('HOST', 'db'), 'db_port': ('PORT', '5432'),
                  'db_user': ('USER', 'odoo'), 'db_password': ('PASSWORD', 'odoo')}
OPTION_DEFAULTS = {'db_name': 'odoo', 'admin_passwd': 'admin', 'proxy_mode': 'False', 'workers': '0',
                   'http_port': '8069', 'gevent_port': '8072', 'list_db': 'True', 'data_dir': '/var/lib/odoo'}


def load_config(path, environ):
    parser = configparser.RawConfigParser()
    parser.read(path)  # a missing file leaves the defaults
    options = dict(parser['options']) if parser.has_section('options') else {}
    for key, (variable, default) in DB_ENVIRONMENT.items():
        options.setdefault(key, environ.get(variable, default))
    for key, default in OPTION_DEFAULTS.items():
        options.setdefault(key, default)

    def text(key):  # Odoo reads "False" and "None" as no value
        return None if options[key] in ('', 'False', 'None') else options[key]

    def flag(key):
        return options[key].strip().lower() in ('1', 'true', 'yes', 'on')

    return Config(
        db_host=text('db_host'), db_port=int(text('db_port') or 5432), db_user=text('db_user'),
        db_password=text('db_password'), db_name=options['db_name'], admin_passwd=options['admin_passwd'],
        proxy_mode=flag('proxy_mode'), workers=int(options['workers']), http_port=int(options['http_port']),
        gevent_port=int(options['gevent_port']), list_db=flag('list_db'), data_dir=options['data_dir'])


class DbnameFilter(logging.Filter):
    """Adds the database a thread works for to its log records, as Odoo's log format shows it."""

    def filter(self, record):
        record.dbname = getattr(threading.current_thread(), 'dbname', '?')
        return True


def setup_logging():
    handler = logging.StreamHandler(sys.stderr)  # flushed after every record
    handler.addFilter(DbnameFilter())
    handler.setFormatter(logging.Formatter('%(asctime)s %(process)d %(levelname)s %(dbname)s %(name)s: %(message)s'))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


# --- PostgreSQL ---------------------------------------------------------------------------------

class Database:
    """The emulator's database: created with its tables on first use, one connection per call."""

    def __init__(self, config):
        self.config = config
        self._ready = False
        self._init_lock = threading.Lock()

    def connect(self, dbname=None, timeout=10):
        c = self.config
        return psycopg2.connect(host=c.db_host, port=c.db_port, user=c.db_user, password=c.db_password,
                                dbname=dbname or c.db_name, connect_timeout=timeout,
                                application_name='odoo-emulator')

    def server_reachable(self):
        """What /web/health?db_server_status checks: can a connection to 'postgres' be opened?"""
        try:
            self.connect('postgres', timeout=3).close()
            return True
        except psycopg2.Error:
            return False

    def initialize(self):
        """Creates the database, the tables and the admin user if missing; idempotent."""
        with self._init_lock:
            if self._ready:
                return
            self._create_database()
            conn = self.connect()
            try:
                with conn, conn.cursor() as cr:
                    cr.execute('SELECT pg_advisory_xact_lock(%s)', (SCHEMA_LOCK,))
                    cr.execute(SCHEMA)
                    cr.execute(SEED, {'uid': ADMIN_UID, 'password': self.config.admin_passwd})
            finally:
                conn.close()
            self._ready = True
            _sql_logger.info('Database %s is ready', self.config.db_name)

    def _create_database(self):
        conn = self.connect('postgres')
        conn.autocommit = True
        try:
            with conn.cursor() as cr:
                cr.execute('SELECT 1 FROM pg_database WHERE datname = %s', (self.config.db_name,))
                if cr.fetchone():
                    return
                try:
                    cr.execute(sql.SQL("CREATE DATABASE {} ENCODING 'unicode' TEMPLATE template0").format(
                        sql.Identifier(self.config.db_name)))
                    _sql_logger.info('Created database %s', self.config.db_name)
                except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    pass  # another emulator created it first
        finally:
            conn.close()

    def initialize_when_up(self, stop):
        """Retries initialize() every second until the database server answers (or we stop)."""
        while not stop.is_set():
            try:
                self.initialize()
                return
            except psycopg2.Error as exc:
                _sql_logger.warning('Connection to the database failed, retrying in 1s: %s', ' '.join(str(exc).split()))
                stop.wait(1)

    @contextmanager
    def transaction(self):
        """A cursor in a transaction that commits when the block ends, or rolls back on an error."""
        self.initialize()  # a no-op once done; raises while the server is unreachable
        conn = self.connect()
        try:
            with conn, conn.cursor() as cr:
                yield cr
        finally:
            conn.close()


# --- Domains and ordering, evaluated in Python over schemaless records --------------------------

TERM_OPERATORS = {'=', '!=', '<>', '<', '>', '<=', '>=', '=?', 'in', 'not in',
                  'like', 'ilike', 'not like', 'not ilike', '=like', '=ilike'}


def match_domain(record, domain):
    """Odoo's domain semantics: prefix '&', '|', '!' and an implicit AND of what remains."""
    if not isinstance(domain, (list, tuple)):
        raise ValueError(f'Invalid domain: {domain!r}')
    stack = []
    try:
        for item in reversed(domain):
            if item == '!':
                stack.append(not stack.pop())
            elif item in ('&', '|'):
                first, second = stack.pop(), stack.pop()
                stack.append(first and second if item == '&' else first or second)
            else:
                stack.append(_match_leaf(record, item))
    except IndexError:
        raise ValueError(f'Invalid domain: {domain!r}') from None
    return all(stack)


def _match_leaf(record, leaf):
    if not (isinstance(leaf, (list, tuple)) and len(leaf) == 3 and isinstance(leaf[1], str)):
        raise ValueError(f'Invalid leaf {leaf!r}')
    field, operator, value = leaf[0], leaf[1].lower(), leaf[2]
    if field in (0, 1) and operator == '=' and value == 1:  # Odoo's FALSE_LEAF and TRUE_LEAF
        return field == 1
    if not isinstance(field, str) or operator not in TERM_OPERATORS:
        raise ValueError(f'Invalid leaf {leaf!r}')
    if '.' in field:
        raise ValueError(f'Invalid leaf {leaf!r}: the emulator does not follow relations')
    have = record.get(field)
    have = False if have is None else have
    if operator == '=?':
        return value in (None, False) or _equal(have, value)
    if operator in ('=', '!=', '<>'):
        return _equal(have, value) == (operator == '=')
    if operator in ('in', 'not in'):
        values = value if isinstance(value, (list, tuple)) else [value]
        return any(_equal(have, v) for v in values) == (operator == 'in')
    if operator in ('<', '>', '<=', '>='):
        pair = _comparable(have, value)
        return pair is not None and {'<': pair[0] < pair[1], '>': pair[0] > pair[1],
                                     '<=': pair[0] <= pair[1], '>=': pair[0] >= pair[1]}[operator]
    return _like(have, value, operator)


def _comparable(a, b):
    """a and b in types that compare, or None; numbers compare with numeric strings (load() sends text)."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, number) and isinstance(b, number) or isinstance(a, str) and isinstance(b, str):
        return a, b
    try:
        if isinstance(a, number) and isinstance(b, str):
            return a, float(b)
        if isinstance(a, str) and isinstance(b, number):
            return float(a), b
    except ValueError:
        pass
    return None


def _equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):  # False also stands for "no value"
        return a is b
    pair = _comparable(a, b)
    return pair[0] == pair[1] if pair else a == b


def _like(have, value, operator):
    """The like family: 'like' and 'ilike' wrap the value in %...%, '=like' and '=ilike' use it as is."""
    negative = operator.startswith('not ')
    if have is False:
        return negative
    pattern = str(value) if operator.startswith('=') else f'%{value}%'
    regex = ''.join('.*' if c == '%' else '.' if c == '_' else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if 'ilike' in operator else 0)
    return (re.fullmatch(regex, str(have), flags) is not None) != negative


def sort_records(records, order):
    """Sorts in place by an Odoo order spec ("name desc, id"); missing values sort last, as in SQL."""
    order = order or 'id'
    for term in reversed(order.split(',')):
        parts = term.split()
        valid = 1 <= len(parts) <= 2 and re.fullmatch(r'\w+', parts[0]) and (
            len(parts) == 1 or parts[1].lower() in ('asc', 'desc'))
        if not valid:
            raise ValueError(f'Invalid "order" specified ({order}).')
        records.sort(key=lambda r, f=parts[0]: _sort_key(r.get(f)),
                     reverse=len(parts) == 2 and parts[1].lower() == 'desc')


def _sort_key(value):
    if value is None or value is False:
        return (2, '')
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, value if isinstance(value, str) else json.dumps(value, sort_keys=True))


# --- Storage: the records of one model, and ir.model.data ---------------------------------------

class _Store:
    def __init__(self, cr, model):
        self.cr, self.model = cr, model

    def all(self):
        return self._rows()

    def browse(self, ids):
        return {row['id']: row for row in self._rows(' AND id = ANY(%s::bigint[])', (list(ids),))}


class RecordStore(_Store):
    """A model's records: rows of emulator_record, their values in a jsonb column. Ids are per model
    and never reused (emulator_sequence), like the id sequence of an Odoo table."""

    def _rows(self, where='', params=()):
        self.cr.execute(
            "SELECT id, vals, to_char(create_date, 'YYYY-MM-DD HH24:MI:SS'),"
            " to_char(write_date, 'YYYY-MM-DD HH24:MI:SS')"
            f' FROM emulator_record WHERE model = %s{where} ORDER BY id', (self.model, *params))
        return [{**vals, 'id': rid, 'create_date': created, 'write_date': written}
                for rid, vals, created, written in self.cr.fetchall()]

    def where_in(self, field, values):
        """The records whose field holds one of values (compared as text, as jsonb's ->> gives)."""
        return self._rows(' AND vals->>%s = ANY(%s::text[])', (field, [str(v) for v in values]))

    def insert(self, vals):
        self.cr.execute('INSERT INTO emulator_sequence AS s (model, last_id) VALUES (%s, 1)'
                        ' ON CONFLICT (model) DO UPDATE SET last_id = s.last_id + 1 RETURNING last_id',
                        (self.model,))
        rid = self.cr.fetchone()[0]
        self.cr.execute('INSERT INTO emulator_record (model, id, vals) VALUES (%s, %s, %s)',
                        (self.model, rid, Json(vals)))
        return rid

    def update(self, rid, vals):
        self.cr.execute("UPDATE emulator_record SET vals = vals || %s, write_date = now() AT TIME ZONE 'UTC'"
                        ' WHERE model = %s AND id = %s', (Json(vals), self.model, rid))

    def delete(self, ids):
        """Deletes the records and, as Odoo's unlink does, their external ids."""
        self.cr.execute('DELETE FROM emulator_record WHERE model = %s AND id = ANY(%s::bigint[])',
                        (self.model, ids))
        self.cr.execute('DELETE FROM ir_model_data WHERE model = %s AND res_id = ANY(%s::bigint[])',
                        (self.model, ids))


class XmlidStore(_Store):
    """ir.model.data, Odoo's table of external ids, seen as the records of a model."""
    columns = ('module', 'name', 'model', 'res_id')

    def _rows(self, where='', params=()):
        self.cr.execute(f'SELECT id, module, name, model, res_id FROM ir_model_data WHERE true{where} ORDER BY id',
                        params)
        return [{'id': rid, 'module': module, 'name': name, 'model': model, 'res_id': res_id,
                 'complete_name': f'{module}.{name}'} for rid, module, name, model, res_id in self.cr.fetchall()]

    def _check(self, vals):
        for key in vals:
            if key not in self.columns:
                raise ValueError(f"Invalid field {key!r} on model 'ir.model.data'")

    def insert(self, vals):
        self._check(vals)
        self.cr.execute(sql.SQL('INSERT INTO ir_model_data ({}) VALUES ({}) RETURNING id').format(
            sql.SQL(', ').join(map(sql.Identifier, vals)), sql.SQL(', ').join(sql.Placeholder() * len(vals))),
            list(vals.values()))
        return self.cr.fetchone()[0]

    def update(self, rid, vals):
        self._check(vals)
        if vals:
            self.cr.execute(sql.SQL('UPDATE ir_model_data SET {} WHERE id = %s').format(
                sql.SQL(', ').join(sql.SQL('{} = %s').format(sql.Identifier(k)) for k in vals)),
                [*vals.values(), rid])

    def delete(self, ids):
        self.cr.execute('DELETE FROM ir_model_data WHERE id = ANY(%s::bigint[])', (ids,))


class ModelStore(_Store):
    """ir.model: the emulator's fixed list of models (MODEL_DESCRIPTIONS), read-only."""

    def _rows(self, where='', params=()):
        rows = [{'id': i, 'model': model, 'name': name, 'state': 'base', 'transient': False}
                for i, (model, name) in enumerate(sorted(MODEL_DESCRIPTIONS.items()), 1)]
        if where:  # browse(): ' AND id = ANY(...)' with the ids
            rows = [row for row in rows if row['id'] in params[0]]
        return rows

    def insert(self, vals):
        raise AccessError("Emulator: ir.model is read-only; its models are fixed (MODEL_DESCRIPTIONS)")

    update = delete = insert


# --- Models and their public (RPC-callable) methods ---------------------------------------------

def api_model(method):
    """Marks a method called on the model rather than on records, like Odoo's @api.model."""
    method.api_model = True
    return method


def _ids(ids):
    ids = [ids] if isinstance(ids, int) and not isinstance(ids, bool) else ids
    if not isinstance(ids, (list, tuple)) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValueError(f'Invalid record ids {ids!r}')
    return list(ids)


class Env:
    """One call's transaction: a cursor, the calling user, and work to do once it commits."""

    def __init__(self, app, cr):
        self.app, self.cr, self.uid = app, cr, None
        self.after_commit = []

    def __getitem__(self, model):
        """The model, or KeyError when this Odoo has no such model (as Odoo's registry)."""
        if model not in MODEL_DESCRIPTIONS:
            raise KeyError(model)
        return MODELS.get(model, Model)(self, model)

    def authenticate(self, login, password):
        """The uid of login, if password is one of its API keys (as Odoo allows over RPC) or its
        password, stored as Odoo stores it (a passlib pbkdf2_sha512 hash) or in plaintext."""
        if not password:
            return False
        self.cr.execute('SELECT u.id, u.password, EXISTS (SELECT 1 FROM res_users_apikeys k'
                        ' WHERE k.user_id = u.id AND k.key = %s) FROM res_users u WHERE u.login = %s',
                        (password, login))
        row = self.cr.fetchone()
        if not row:
            return False
        uid, stored, is_key = row
        return uid if is_key or verify_password(password, stored) else False

    def check_credentials(self, uid, password):
        self.cr.execute('SELECT login FROM res_users WHERE id = %s', (uid,))
        row = self.cr.fetchone()
        return bool(row) and self.authenticate(row[0], password) == uid

    def apikey_uid(self, key):
        self.cr.execute('SELECT user_id FROM res_users_apikeys WHERE key = %s', (key,))
        row = self.cr.fetchone()
        return row[0] if row else None

    def lookup_xmlid(self, xmlid):
        module, _, name = xmlid.partition('.')
        self.cr.execute('SELECT model, res_id FROM ir_model_data WHERE module = %s AND name = %s', (module, name))
        return self.cr.fetchone()

    def set_xmlid(self, xmlid, model, res_id):
        module, _, name = xmlid.partition('.')
        self.cr.execute('INSERT INTO ir_model_data (module, name, model, res_id) VALUES (%s, %s, %s, %s)'
                        ' ON CONFLICT (module, name) DO UPDATE SET model = EXCLUDED.model, res_id = EXCLUDED.res_id',
                        (module, name, model, res_id))


class Model:
    """Any model name: schemaless records with the public ORM methods. Methods whose name starts with
    an underscore are private, as in Odoo; record methods take the record ids first."""
    _store_class = RecordStore

    def __init__(self, env, name):
        self.env, self._name = env, name
        self._store = self._store_class(env.cr, name)

    def _browse(self, ids):
        """The records, by id; MissingError if one does not exist."""
        ids = _ids(ids)
        records = self._store.browse(ids)
        missing = tuple(i for i in ids if i not in records)
        if missing:
            raise MissingError(f'Record does not exist or has been deleted.\n'
                               f'(Record: {self._name}{missing!r}, User: {self.env.uid})')
        return records

    _defaults = {}

    def _label(self, field):
        """A field's string, as Odoo's messages show it (Odoo's default: the name, capitalized)."""
        if (self._name, field) == ('stock.move', 'location_dest_id') and self.env.app.major < 18:
            return 'Destination Location'
        return FIELD_LABELS.get((self._name, field)) or field.removesuffix('_id').replace('_', ' ').title()

    def _check_required(self, vals, creating):
        """The NOT NULL constraints of the model's table: the first violated, in column order."""
        for field in REQUIRED_FIELDS.get(self._name, ()):
            if (creating or field in vals) and vals.get(field) in (None, False, ''):
                raise NotNullViolation(self._name, field, self._label(field))

    def _prepare(self, vals, creating=False):
        """Checks values to create or write; stands in for Odoo's columns and constraints."""
        if not isinstance(vals, dict):
            raise ValueError(f'Invalid values {vals!r}: expected a dictionary')
        if creating:
            vals = {**self._defaults_now(), **vals}
        vals = {k: v for k, v in vals.items() if k not in MAGIC_FIELDS}
        for field, value in vals.items():
            if is_datetime_field(field) and value:
                vals[field] = to_datetime(value).strftime(DATETIME_FORMAT)
        self._check_required(vals, creating)
        for field in QUANTITY_FIELDS:
            value = vals.get(field)
            try:
                negative = not isinstance(value, bool) and float(value) < 0
            except (TypeError, ValueError):
                continue
            if negative:
                raise ValidationError(f'The quantity must be positive ({self._name}.{field} = {value})')
        return vals

    def _defaults_now(self):
        return dict(self._defaults)

    def _create(self, vals):
        return self._store.insert(self._prepare(vals, creating=True))

    def _read_record(self, record, fields):
        names = fields or [name for name in record if name != 'id']
        values = {name: record.get(name) for name in names if name != 'id'}
        return {'id': record['id'], **{k: False if v is None else v for k, v in values.items()}}

    def _search(self, domain, offset=0, limit=None, order=None):
        records = [record for record in self._store.all() if match_domain(record, domain)]
        sort_records(records, order)
        records = records[offset or 0:]
        return records[:limit] if limit else records

    @api_model
    def create(self, vals_list):
        """Always a list of ids; call_kw gives a single id for a single dict, as Odoo does."""
        try:
            return [self._create(vals) for vals in ([vals_list] if isinstance(vals_list, dict) else vals_list)]
        except NotNullViolation as exc:
            raise exc.as_validation_error() from None

    def write(self, ids, vals):
        try:
            vals = self._prepare(vals)
        except NotNullViolation as exc:
            raise exc.as_validation_error() from None
        for rid in self._browse(ids):
            self._store.update(rid, vals)
        return True

    def read(self, ids, fields=None, load='_classic_read'):
        records = self._browse(ids)
        return [self._read_record(records[rid], fields) for rid in _ids(ids)]

    def unlink(self, ids):
        self._browse(ids)
        self._store.delete(_ids(ids))
        return True

    @api_model
    def search(self, domain, offset=0, limit=None, order=None):
        return [record['id'] for record in self._search(domain, offset, limit, order)]

    @api_model
    def search_count(self, domain, limit=None):
        count = len(self._search(domain))
        return min(count, limit) if limit else count

    @api_model
    def search_read(self, domain=None, fields=None, offset=0, limit=None, order=None, **read_kwargs):
        return [self._read_record(record, fields) for record in self._search(domain or [], offset, limit, order)]

    @api_model
    def fields_get(self, allfields=None, attributes=None):
        """BaseModel.fields_get, for the fields the emulator knows: 'id', the magic dates and the
        relational fields above (attributes 'type', 'relation' and 'string')."""
        known = {'id': ('integer', None), 'create_date': ('datetime', None), 'write_date': ('datetime', None),
                 **RELATIONAL_FIELDS.get(self._name, {})}
        result = {}
        for name, (ftype, relation) in known.items():
            if allfields and name not in allfields:
                continue
            description = {'type': ftype, 'string': self._label(name)}
            if relation:
                description['relation'] = relation
            result[name] = {k: v for k, v in description.items() if not attributes or k in attributes}
        return result

    @api_model
    def load(self, fields, data):
        """BaseModel.load: one record per row, all or nothing. A column 'id' holds external ids, which
        make a row update the record they name, or create it and record the id."""
        cr = self.env.cr
        cr.execute('SAVEPOINT emulator_load')
        ids, messages = [], []
        for index, row in enumerate(data):
            info = {'rows': {'from': index, 'to': index}, 'record': index}
            try:
                ids.append(self._load_row(dict(zip(fields, row))))
            except NotNullViolation as exc:
                messages.append({**info, 'type': 'error', 'message': exc.load_message(), 'field': exc.field})
            except (UserError, ValueError) as exc:
                messages.append({**info, 'type': 'error', 'message': str(exc)})
            except psycopg2.Error as exc:  # the transaction is aborted: report and stop
                messages.append({**info, 'type': 'error', 'message': str(exc).strip()})
                break
        if messages:
            cr.execute('ROLLBACK TO SAVEPOINT emulator_load')
        cr.execute('RELEASE SAVEPOINT emulator_load')
        return {'ids': False if messages else ids, 'messages': messages, 'nextrow': 0}

    def _load_row(self, row):
        vals, xmlid, rid = {}, None, None
        for field, value in row.items():
            if field == 'id':
                xmlid = value or None
            elif field == '.id':
                rid = int(value) if value not in ('', None, False) else None
            elif field.endswith('/.id'):
                vals[field[:-4]] = int(value) if value else False
            elif field.endswith('/id'):
                vals[field[:-3]] = self._xmlid_res_id(value, field) if value else False
            elif '/' in field:
                raise ValueError(f'Cannot import {field!r}: the emulator imports one record per row')
            else:
                vals[field] = self._load_cell(field, value)
        if xmlid and '.' not in xmlid:
            xmlid = f'__import__.{xmlid}'
        if rid is None and xmlid and (found := self.env.lookup_xmlid(xmlid)):
            model, res_id = found
            if model != self._name:
                raise ValueError(f'External ID {xmlid!r} refers to a record of model {model!r}')
            rid = res_id if self._store.browse([res_id]) else None  # else a stale id: recreate
        if rid is None:
            rid = self._create(vals)
        else:
            self.write([rid], vals)
        if xmlid:
            self.env.set_xmlid(xmlid, self._name, rid)
        return rid

    def _load_cell(self, field, value):
        """ir.fields.converter for the fields whose type the emulator knows; other cells stay text."""
        if value in ('', None, False):
            return False
        if field in FLOAT_FIELDS and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"'{value}' does not seem to be a number for field '{self._label(field)}'") from None
        if is_datetime_field(field):
            try:
                to_datetime(value)
            except (TypeError, ValueError):
                raise ValueError(f"'{value}' does not seem to be a valid datetime for field"
                                 f" '{self._label(field)}'") from None
        return value

    def _xmlid_res_id(self, value, field):
        found = self.env.lookup_xmlid(value if '.' in value else f'__import__.{value}')
        if not found:
            raise ValueError(f"No matching record found for external id '{value}' in field"
                             f" '{self._label(field.removesuffix('/id'))}'")
        return found[1]


class IrModelData(Model):
    _store_class = XmlidStore


class IrAttachment(Model):
    """ir.attachment: 'datas' (base64) is kept in the filestore as <data_dir>/filestore/<db>/<sha1[:2]>/<sha1>,
    the record holds store_fname, checksum, file_size and mimetype, as in Odoo."""

    def _full_path(self, fname):
        config = self.env.app.config
        return os.path.join(config.data_dir, 'filestore', config.db_name, fname)

    def _prepare(self, vals, creating=False):
        vals = super()._prepare(vals, creating=creating)
        if 'datas' in vals:
            datas = vals.pop('datas')
            vals.update(self._write_file(base64.b64decode(datas)) if datas else
                        {'store_fname': False, 'checksum': False, 'file_size': 0})
        return vals

    def _write_file(self, content):
        checksum = hashlib.sha1(content).hexdigest()
        fname = f'{checksum[:2]}/{checksum}'
        path = self._full_path(fname)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f'{path}.{os.getpid()}.{threading.get_ident()}'
            with open(partial, 'wb') as f:
                f.write(content)
            os.replace(partial, path)
        return {'store_fname': fname, 'checksum': checksum, 'file_size': len(content)}

    def _create(self, vals):
        vals = {'type': 'binary', **vals}
        if not vals.get('mimetype'):
            vals['mimetype'] = mimetypes.guess_type(vals.get('name') or '')[0] or 'application/octet-stream'
        return super()._create(vals)

    def _read_record(self, record, fields):
        result = super()._read_record(record, fields)
        if not fields or 'datas' in fields:
            result['datas'] = self._read_file(record.get('store_fname'))
        return result

    def _read_file(self, fname):
        """Odoo's _file_read: a missing file is logged and reads as no content (datas False)."""
        if not fname:
            return False
        path = self._full_path(fname)
        try:
            with open(path, 'rb') as f:
                return base64.b64encode(f.read()).decode() or False
        except OSError:
            _attachment_logger.info('_read_file reading %s', path, exc_info=True)
            return False

    def _collect_files(self, fnames):
        """Removes, once the transaction commits, the files no attachment refers to any more."""
        for fname in set(filter(None, fnames)):
            self.env.cr.execute("SELECT 1 FROM emulator_record WHERE model = 'ir.attachment'"
                                " AND vals->>'store_fname' = %s LIMIT 1", (fname,))
            if not self.env.cr.fetchone():
                self.env.after_commit.append(functools.partial(self._remove_file, fname))

    def _remove_file(self, fname):
        try:
            os.remove(self._full_path(fname))
        except FileNotFoundError:
            pass

    def write(self, ids, vals):
        old = [r.get('store_fname') for r in self._browse(ids).values()] if 'datas' in vals else []
        super().write(ids, vals)
        self._collect_files(old)
        return True

    def unlink(self, ids):
        old = [r.get('store_fname') for r in self._browse(ids).values()]
        super().unlink(ids)
        self._collect_files(old)
        return True


class IrModel(Model):
    _store_class = ModelStore


# --- Business logic: just enough of stock and mrp for what plantd asks --------------------------

BYPASS_USAGES = ('supplier', 'customer', 'inventory', 'production')  # stock.location.should_bypass_reservation
BACKORDER_VIEW_ID = 1001  # stands in for the id of stock.view_backorder_confirmation
EMPTY_TRANSFER = 'You can\u2019t validate an empty transfer. Please add some products to move before proceeding.'
NO_QUANTITIES = ('You cannot validate a transfer if no quantities are reserved. '
                 'To force the transfer, encode quantities.')
ROUNDING = 1e-6  # Odoo compares quantities at the unit of measure's rounding (0.01 and finer)


def _number(value):
    """A stored number (some come as text); 0 for none."""
    try:
        return 0.0 if value in (None, False, '') else float(value)
    except (TypeError, ValueError):
        return 0.0


def _id(value):
    """A many2one as stored: an id, a numeric text, or [id, name]; None for none."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or isinstance(value, bool) or value == '':
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _now():
    return datetime.now(timezone.utc).strftime(DATETIME_FORMAT)


class StockMove(Model):
    """stock.move: demand (product_uom_qty), quantity, picked, state. Moves are done through their
    transfer: Odoo (17 on) has no public action_done."""
    _defaults = {'state': 'draft', 'product_uom_qty': 0.0, 'quantity': 0.0, 'picked': False}


class StockPicking(Model):
    """stock.picking: moves linked through move_ids commands, action_confirm and button_validate as
    addons/stock/models/stock_picking.py does them, without reservations of stock (quants)."""
    _defaults = {'state': 'draft'}

    def _moves(self, picking_ids):
        return self.env['stock.move']._store.where_in('picking_id', picking_ids)

    def _location_bypasses(self, location):
        """stock.location.should_bypass_reservation: partners, inventory and production."""
        lid = _id(location)
        found = self.env['stock.location']._store.browse([lid]) if lid else {}
        return lid in found and found[lid].get('usage') in BYPASS_USAGES

    def _picking_type(self, picking):
        tid = _id(picking.get('picking_type_id'))
        return self.env['stock.picking.type']._store.browse([tid]).get(tid, {}) if tid else {}

    def _name_new(self, rid, vals):
        """A new transfer's name from its operation type, as Odoo's sequence gives it."""
        if vals.get('name') not in (None, False, '', '/'):
            return
        ptype = self._picking_type(vals)
        prefix = ptype.get('sequence_prefix') or f"{ptype.get('sequence_code') or 'TR'}/"
        self._store.update(rid, {'name': f'{prefix}{rid:05d}'})

    def _create(self, vals):
        if not isinstance(vals, dict):
            raise ValueError(f'Invalid values {vals!r}: expected a dictionary')
        vals = dict(vals)
        commands = vals.pop('move_ids', None)
        rid = super()._create(vals)
        self._name_new(rid, vals)
        if commands:
            self._link_moves(rid, commands)
        return rid

    def write(self, ids, vals):
        if not isinstance(vals, dict):
            raise ValueError(f'Invalid values {vals!r}: expected a dictionary')
        vals = dict(vals)
        commands = vals.pop('move_ids', None)
        super().write(ids, vals)
        if commands:
            for rid in _ids(ids):
                try:
                    self._link_moves(rid, commands)
                except NotNullViolation as exc:
                    raise exc.as_validation_error() from None
        return True

    def _read_record(self, record, fields):
        result = super()._read_record(record, fields)
        if not fields or 'move_ids' in fields:
            result['move_ids'] = [m['id'] for m in self._moves([record['id']])]
        return result

    def _link_moves(self, rid, commands):
        """move_ids commands: (0, 0, vals) creates a move in the transfer, (4, id) links one,
        (3, id) unlinks one, (6, 0, ids) sets them all."""
        moves = self.env['stock.move']
        picking = self._store.browse([rid])[rid]
        if not isinstance(commands, (list, tuple)):
            raise ValueError(f'Invalid move_ids {commands!r}: expected a list of commands')
        for command in commands:
            code = command[0] if isinstance(command, (list, tuple)) and command else None
            if code == 0 and len(command) == 3 and isinstance(command[2], dict):
                moves._create({'location_id': picking.get('location_id'),
                               'location_dest_id': picking.get('location_dest_id'),
                               **command[2], 'picking_id': rid})
            elif code in (3, 4) and len(command) >= 2:
                moves._browse([command[1]])
                moves._store.update(command[1], {'picking_id': rid if code == 4 else False})
            elif code == 6 and len(command) == 3:
                wanted = _ids(command[2])
                moves._browse(wanted)
                for move in self._moves([rid]):
                    if move['id'] not in wanted:
                        moves._store.update(move['id'], {'picking_id': False})
                for mid in wanted:
                    moves._store.update(mid, {'picking_id': rid})
            else:
                raise ValueError(f'The emulator does not take the command {command!r} on move_ids')
        self._compute_state(rid)

    def _compute_state(self, rid):
        """StockPicking._compute_state, from the moves (without reservations)."""
        picking = self._store.browse([rid])[rid]
        moves = self._moves([rid])
        states = [m.get('state') or 'draft' for m in moves]
        if not moves or 'draft' in states:
            state = 'draft'
        elif all(s == 'cancel' for s in states):
            state = 'cancel'
        elif all(s in ('done', 'cancel') for s in states):
            state = 'done'
        elif self._location_bypasses(picking.get('location_id') or moves[0].get('location_id')) or 'assigned' in states:
            state = 'assigned'
        else:
            state = 'confirmed'
        if picking.get('state') != state:
            self._store.update(rid, {'state': state})

    def _assign(self, moves):
        """Confirmed moves reserved: in full from a location that bypasses reservations; never
        otherwise (the emulator keeps no stock)."""
        store = self.env['stock.move']._store
        for move in moves:
            if self._location_bypasses(move.get('location_id')):
                store.update(move['id'], {'state': 'assigned', 'quantity': _number(move.get('product_uom_qty'))})
            else:
                store.update(move['id'], {'state': 'confirmed'})

    def action_confirm(self, ids, context=None):
        ids = _ids(ids)
        self._browse(ids)
        self._assign([m for m in self._moves(ids) if (m.get('state') or 'draft') == 'draft'])
        for rid in ids:
            self._compute_state(rid)
        return True

    def button_validate(self, ids, context=None):
        """StockPicking.button_validate: confirm drafts (their moves' quantity is their demand),
        the sanity checks, the backorder question unless skip_backorder, then done."""
        ctx = context or {}
        ids = _ids(ids)
        pickings = self._browse(ids)
        drafts = [rid for rid in ids if pickings[rid].get('state') == 'draft']
        if drafts:
            self.action_confirm(drafts)
            for move in self._moves(drafts):
                if abs(_number(move.get('quantity'))) < ROUNDING and abs(_number(move.get('product_uom_qty'))) >= ROUNDING:
                    self.env['stock.move']._store.update(move['id'], {'quantity': _number(move.get('product_uom_qty'))})
        moves = {rid: self._moves([rid]) for rid in ids}
        if not ctx.get('skip_sanity_check'):
            empty = [rid for rid in ids if not moves[rid]]
            if len(ids) == 1:  # _should_show_transfers: one transfer, its own messages
                if empty:
                    raise UserError(EMPTY_TRANSFER)
                if all(abs(_number(m.get('quantity'))) < ROUNDING for m in moves[ids[0]]
                       if m.get('state') not in ('done', 'cancel')):
                    raise UserError(NO_QUANTITIES)
            elif empty:
                names = ', '.join(str(pickings[rid].get('name')) for rid in empty)
                raise UserError(f'Transfers {names}: Please add some items to move.')
        store = self.env['stock.move']._store
        for rid in ids:  # _pre_action_done_hook: quantities set and nothing picked: all picked
            if any(_number(m.get('quantity')) for m in moves[rid]) and not any(m.get('picked') for m in moves[rid]):
                for move in moves[rid]:
                    store.update(move['id'], {'picked': True})
                    move['picked'] = True
        policy = {rid: self._picking_type(pickings[rid]).get('create_backorder') or 'ask' for rid in ids}
        if not ctx.get('skip_backorder'):
            asking = [rid for rid in ids if policy[rid] == 'ask' and any(
                m.get('state') != 'cancel' and (
                    (_number(m.get('product_uom_qty')) and not m.get('picked'))
                    or (_number(m.get('quantity')) if m.get('picked') else 0.0)
                    < _number(m.get('product_uom_qty')) - ROUNDING)
                for m in moves[rid])]
            if asking:
                return {'name': 'Create Backorder?', 'type': 'ir.actions.act_window', 'view_mode': 'form',
                        'res_model': 'stock.backorder.confirmation', 'views': [[BACKORDER_VIEW_ID, 'form']],
                        'view_id': BACKORDER_VIEW_ID, 'target': 'new',
                        'context': {**ctx, 'button_validate_picking_ids': ids, 'default_show_transfers': len(ids) > 1,
                                    'default_pick_ids': [[4, rid] for rid in asking]}}
        not_to_backorder = {rid for rid in ids if policy[rid] == 'never'}
        not_to_backorder |= {rid for rid in ctx.get('picking_ids_not_to_backorder') or ()
                             if rid in pickings and policy[rid] != 'always'}
        for rid in ids:
            self._action_done(pickings[rid], moves[rid], cancel_backorder=rid in not_to_backorder)
        return True

    def _action_done(self, picking, moves, cancel_backorder):
        """StockMove._action_done for a transfer's moves: what is picked is done; the rest of a
        move goes to a backorder (a new transfer), or is cancelled with cancel_backorder."""
        store, now, rest = self.env['stock.move']._store, _now(), []
        for move in moves:
            if move.get('state') in ('done', 'cancel'):
                continue
            quantity, demand = _number(move.get('quantity')), _number(move.get('product_uom_qty'))
            if quantity <= 0 or not move.get('picked'):
                if abs(demand) < ROUNDING or cancel_backorder:
                    store.update(move['id'], {'state': 'cancel'})
                else:
                    rest.append(move['id'])
                continue
            if quantity < demand - ROUNDING and not cancel_backorder:  # StockMove._split
                split = {k: v for k, v in move.items() if k not in MAGIC_FIELDS}
                split.update(product_uom_qty=demand - quantity, quantity=0.0, picked=False)
                rest.append(store.insert(split))
                store.update(move['id'], {'product_uom_qty': quantity})
            store.update(move['id'], {'state': 'done', 'date': now})
        self._store.update(picking['id'], {'date_done': now, 'priority': '0'})
        if rest and not cancel_backorder:  # StockPicking._create_backorder
            vals = {k: v for k, v in picking.items()
                    if k not in (*MAGIC_FIELDS, 'name', 'state', 'date_done', 'move_ids')}
            backorder = self._store.insert({**vals, 'backorder_id': picking['id'], 'state': 'draft'})
            self._name_new(backorder, {'picking_type_id': picking.get('picking_type_id')})
            for mid in rest:
                store.update(mid, {'picking_id': backorder, 'picked': False})
            self._assign(self._moves([backorder]))
            self._compute_state(backorder)
        self._compute_state(picking['id'])


class MrpProduction(Model):
    """mrp.production: action_confirm, set_qty_producing and button_mark_done as
    addons/mrp/models/mrp_production.py does them, without components or stock."""
    _defaults = {'state': 'draft', 'qty_producing': 0.0, 'qty_produced': 0.0}

    def action_confirm(self, ids, context=None):
        for rid, record in self._browse(ids).items():
            if record.get('state') == 'draft':
                self._store.update(rid, {'state': 'confirmed'})
        return True

    def set_qty_producing(self, ids, context=None):
        """Odoo consumes the components for qty_producing here; it returns None."""
        ids = _ids(ids)
        if len(ids) != 1:
            raise ValueError(f'Expected singleton: {self._name}{tuple(ids)!r}')
        self._browse(ids)
        return None

    def button_mark_done(self, ids, context=None):
        ctx = context or {}
        ids = _ids(ids)
        productions = self._browse(ids)
        for rid in ids:  # pre_button_mark_done: nothing being produced means all of it
            record = productions[rid]
            if abs(_number(record.get('qty_producing'))) < ROUNDING:
                record['qty_producing'] = _number(record.get('product_qty'))
                self._store.update(rid, {'qty_producing': record['qty_producing']})
        if not ctx.get('skip_backorder'):
            short = [rid for rid in ids if _number(productions[rid].get('qty_producing'))
                     < _number(productions[rid].get('product_qty')) - ROUNDING]
            if short:  # _action_generate_backorder_wizard
                return {'name': 'You produced less than initial demand', 'type': 'ir.actions.act_window',
                        'res_model': 'mrp.production.backorder', 'view_mode': 'form', 'target': 'new',
                        'context': {**ctx, 'default_mrp_production_ids': ids,
                                    'default_mrp_production_backorder_line_ids': [
                                        [0, 0, {'mrp_production_id': rid, 'to_backorder': True}] for rid in short]}}
        to_backorder = set(ctx.get('mo_ids_to_backorder') or ()) & set(ids)
        backorders = [bo for rid in ids if rid in to_backorder
                      and (bo := self._split(productions[rid])) is not None]
        workorders = self.env['mrp.workorder']
        for rid in ids:
            for workorder in workorders._store.where_in('production_id', [rid]):
                workorders._store.update(workorder['id'], {'state': 'done'})
            self._store.update(rid, {'state': 'done', 'qty_produced': _number(productions[rid].get('qty_producing')),
                                     'date_finished': _now(), 'is_locked': True, 'priority': '0'})
        if not backorders:
            return True
        action = {'res_model': 'mrp.production', 'type': 'ir.actions.act_window',
                  'context': {**ctx, 'mo_ids_to_backorder': None}}
        if len(backorders) == 1:
            return {**action, 'views': [[False, 'form']], 'view_mode': 'form', 'res_id': backorders[0]}
        return {**action, 'name': 'Backorder MO', 'domain': [['id', 'in', backorders]],
                'views': [[False, 'list'], [False, 'form']], 'view_mode': 'list,form'}

    def _split(self, record):
        """_split_productions: the order keeps what was produced and is renamed NAME-001; a
        backorder NAME-002 (or the next number) gets the rest."""
        produced, planned = _number(record.get('qty_producing')), _number(record.get('product_qty'))
        if produced >= planned - ROUNDING:
            return None
        sequence = int(_number(record.get('backorder_sequence')))
        name = str(record.get('name') or '')
        base = re.sub(r'-\d+$', '', name) if sequence else name
        if not sequence:
            sequence, name = 1, f'{base}-001'
        taken = [int(r['name'][-3:]) for r in self._search([['name', '=like', f'{base}-___']])
                 if r['name'][-3:].isdigit()]
        following = max([sequence, *taken]) + 1
        self._store.update(record['id'], {'name': name, 'product_qty': produced, 'backorder_sequence': sequence})
        vals = {k: v for k, v in record.items() if k not in (*MAGIC_FIELDS, 'date_finished')}
        vals.update(name=f'{base}-{following:03d}', product_qty=planned - produced, qty_producing=0.0,
                    qty_produced=0.0, state='confirmed', backorder_sequence=following)
        return self._store.insert(vals)


class MrpWorkcenterProductivity(Model):
    """A work center's time log: its duration in minutes from date_start and date_end, and the
    loss reason's type (loss_type), as Odoo computes them (work center calendars aside)."""

    def _defaults_now(self):
        return {'date_start': _now()}

    def _computed(self, vals):
        start, end = vals.get('date_start'), vals.get('date_end')
        duration = (to_datetime(end) - to_datetime(start)).total_seconds() / 60 if start and end else 0.0
        loss = _id(vals.get('loss_id'))
        losses = self.env['mrp.workcenter.productivity.loss']._store.browse([loss]) if loss else {}
        return {'duration': round(duration, 2), 'loss_type': losses.get(loss, {}).get('loss_type') or False}

    def _create(self, vals):
        vals = self._prepare(vals, creating=True)
        return self._store.insert({**vals, **self._computed(vals)})

    def write(self, ids, vals):
        super().write(ids, vals)
        for rid, record in self._browse(ids).items():
            self._store.update(rid, self._computed(record))
        return True


MODELS = {'ir.model': IrModel, 'ir.model.data': IrModelData, 'ir.attachment': IrAttachment,
          'stock.move': StockMove, 'stock.picking': StockPicking, 'mrp.production': MrpProduction,
          'mrp.workcenter.productivity': MrpWorkcenterProductivity}


def get_public_method(model, name):
    """odoo.service.model.get_public_method."""
    if not isinstance(name, str) or name.startswith('_'):
        raise AccessError(f"Private methods (such as '{model._name}.{name}') cannot be called remotely.")
    method = getattr(model, name, None)
    if not callable(method):
        if model.env.app.major < 19:  # odoo.api.call_kw of Odoo 18
            raise AttributeError(f"The method '{name}' does not exist on the model '{model._name}'")
        raise AttributeError(f"The method '{model._name}.{name}' does not exist")
    return method


def with_context(method, kwargs, context):
    """The call's context goes to the methods that act on it (Odoo puts it in the environment)."""
    if 'context' in inspect.signature(method).parameters:
        return {**kwargs, 'context': dict(context or {})}
    return kwargs


def call_kw(model, name, args, kwargs):
    """odoo.api.call_kw, as execute_kw uses it: record methods take their ids as the first argument."""
    method = get_public_method(model, name)
    kwargs = dict(kwargs)
    context = kwargs.pop('context', None)
    result = method(*args, **with_context(method, kwargs, context))
    if name == 'create' and args and isinstance(args[0], dict):
        return result[0]  # a single dict creates one record and gives its id
    return result


def call_json2(model, name, ids, kwargs, context=None):
    """The body of Odoo 19's web_json_2_rpc controller, once authenticated."""
    try:
        method = get_public_method(model, name)
    except AttributeError as exc:
        raise NotFound(exc.args[0]) from exc
    is_model_method = getattr(method, 'api_model', False)
    if is_model_method and ids:
        raise UnprocessableEntity(f'cannot call {model._name}.{name} with ids')
    args = () if is_model_method else (ids,)
    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        raise UnprocessableEntity(exc.args[0]) from exc
    return method(*args, **with_context(method, kwargs, context))


def filter_kwargs(func, kwargs):
    """Drops the parameters func does not take, as Odoo's route wrapper does."""
    accepted = inspect.signature(func).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}


# --- The emulated server: services behind /jsonrpc and the other JSON-RPC routes ----------------

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


# --- WebSocket (RFC 6455), after the handshake --------------------------------------------------

class WebSocketClose(Exception):
    def __init__(self, code, reason=''):
        super().__init__(code, reason)
        self.code, self.reason = code, reason


def websocket_accept(headers):
    """The Sec-WebSocket-Accept for a handshake, checked as odoo.addons.bus.websocket does."""
    missing = [name for name in WEBSOCKET_HEADERS if not headers.get(name)]
    if missing:
        raise BadRequest(f"Empty or missing header(s): {', '.join(missing)}")
    if headers['sec-websocket-version'] != '13':
        raise UpgradeRequired(headers=[('Sec-WebSocket-Version', '13')])
    key = headers['sec-websocket-key']
    try:
        decoded = base64.b64decode(key, validate=True)
    except ValueError:
        raise BadRequest('Sec-WebSocket-Key should be b64 encoded') from None
    if len(decoded) != 16:
        raise BadRequest('Sec-WebSocket-Key should be of length 16 once decoded')
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


class WebSocket:
    CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile

    def serve(self, reply):
        """Answers each text message with reply(message), unless that is None, until the peer closes."""
        try:
            for message in self._messages():
                answer = reply(message)
                if answer is not None:
                    self._send(self.TEXT, answer.encode())
        except WebSocketClose as close:
            self._send(self.CLOSE, struct.pack('!H', close.code) + close.reason.encode())
        except OSError:
            pass  # the peer went away

    def _messages(self):
        parts, kind = [], None
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode >= self.CLOSE:
                if not fin or len(payload) > 125:
                    raise WebSocketClose(1002, 'invalid control frame')
                if opcode == self.CLOSE:
                    self._send(self.CLOSE, payload[:2])  # echo the status code, then end
                    return
                if opcode == self.PING:
                    self._send(self.PONG, payload)
                elif opcode != self.PONG:
                    raise WebSocketClose(1002, 'unknown opcode')
                continue
            if (opcode == self.CONTINUATION) == (kind is None) or opcode not in (0, self.TEXT, self.BINARY):
                raise WebSocketClose(1002, 'unexpected frame')
            kind = kind or opcode
            parts.append(payload)
            if sum(map(len, parts)) > WEBSOCKET_MAX_MESSAGE:
                raise WebSocketClose(1009, 'message too big')
            if fin:
                data, binary, parts, kind = b''.join(parts), kind == self.BINARY, [], None
                if binary:
                    raise WebSocketClose(1003, 'binary messages are not supported')
                try:
                    text = data.decode('utf-8')
                except UnicodeDecodeError:
                    raise WebSocketClose(1007, 'invalid UTF-8') from None
                yield text

    def _read_frame(self):
        first, second = self._read(2)
        if first & 0x70:
            raise WebSocketClose(1002, 'reserved bits set')
        length = second & 0x7F
        if length == 126:
            length = struct.unpack('!H', self._read(2))[0]
        elif length == 127:
            length = struct.unpack('!Q', self._read(8))[0]
        if not second & 0x80:
            raise WebSocketClose(1002, 'client frames must be masked')
        if length > WEBSOCKET_MAX_MESSAGE:
            raise WebSocketClose(1009, 'message too big')
        mask = self._read(4)
        masked = self._read(length)
        key = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(masked, 'big') ^ int.from_bytes(key, 'big')).to_bytes(length, 'big')
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, size):
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionResetError('the peer closed the connection')
        return data

    def _send(self, opcode, payload):
        length = len(payload)
        if length < 126:
            header = struct.pack('!BB', 0x80 | opcode, length)
        elif length < 2 ** 16:
            header = struct.pack('!BBH', 0x80 | opcode, 126, length)
        else:
            header = struct.pack('!BBQ', 0x80 | opcode, 127, length)
        self.wfile.write(header + payload)
        self.wfile.flush()


def bus_reply(message, port):
    """Odoo's bus answers a subscription with nothing (notifications come later). Emulator-only: any
    other message is echoed with the port that answered, parsed as JSON when it is JSON."""
    try:
        payload = json.loads(message)
    except ValueError:
        payload = message
    if isinstance(payload, dict) and payload.get('event_name') == 'subscribe':
        return None
    return json.dumps({'echo': payload, 'port': port})


# --- HTTP ---------------------------------------------------------------------------------------

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


# --- Main ---------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description='A stand-in for Odoo, for tests.')
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
