"""Storage: the records of one model, and ir.model.data."""

from psycopg2 import sql
from psycopg2.extras import Json

from .constants import MODEL_DESCRIPTIONS
from .errors import AccessError

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
