"""PostgreSQL: the database, its tables and the admin user, created when the server answers."""

import base64
import hashlib
import hmac
import threading
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .constants import ADMIN_UID, SCHEMA_LOCK, _sql_logger


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
