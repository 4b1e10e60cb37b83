"""Business logic: just enough of stock and mrp for what plantd asks."""

import re

from .constants import MAGIC_FIELDS
from .errors import NotNullViolation, UserError, to_datetime
from .models import MODELS, Model, _id, _ids, _now, _number

BYPASS_USAGES = ('supplier', 'customer', 'inventory', 'production')  # stock.location.should_bypass_reservation
BACKORDER_VIEW_ID = 1001  # stands in for the id of stock.view_backorder_confirmation
EMPTY_TRANSFER = 'You can\u2019t validate an empty transfer. Please add some products to move before proceeding.'
NO_QUANTITIES = ('You cannot validate a transfer if no quantities are reserved. '
                 'To force the transfer, encode quantities.')
ROUNDING = 1e-6  # Odoo compares quantities at the unit of measure's rounding (0.01 and finer)

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

MODELS.update({'stock.move': StockMove, 'stock.picking': StockPicking, 'mrp.production': MrpProduction,
               'mrp.workcenter.productivity': MrpWorkcenterProductivity})

