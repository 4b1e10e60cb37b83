"""Models and their public (RPC-callable) methods; MODELS maps a model name to its class (stock.py adds its own)."""

import base64
import functools
import hashlib
import mimetypes
import os
import threading
from datetime import datetime, timezone

import psycopg2
import psycopg2.errors

from .constants import DATETIME_FORMAT, FIELD_LABELS, FLOAT_FIELDS, MAGIC_FIELDS, MODEL_DESCRIPTIONS, QUANTITY_FIELDS, RELATIONAL_FIELDS, REQUIRED_FIELDS, _attachment_logger
from .database import verify_password
from .domains import match_domain, sort_records
from .errors import MissingError, NotNullViolation, UserError, ValidationError, is_datetime_field, to_datetime
from .store import ModelStore, RecordStore, XmlidStore


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

# Filled in by stock.py with the models it adds.
MODELS = {'ir.model': IrModel, 'ir.model.data': IrModelData, 'ir.attachment': IrAttachment}

