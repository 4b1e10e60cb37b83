"""odoo.conf, the environment's database settings, and logging as Odoo words it."""

import configparser
import logging
import sys
import threading
from dataclasses import dataclass

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
