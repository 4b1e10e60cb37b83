"""One call for a batch of plantd's runs.

A run is what plantd would otherwise send as one `load` (creates of one model with the same
columns, or stock moves), each row under its external id `plantd.<plant>_<seq>`, followed for
stock moves by a transfer of their own that is confirmed, picked in full and validated.
Runs are carried out in the order given, each in a savepoint: the first one Odoo refuses is
rolled back and ends the batch, and plantd finds the refused transaction one by one with its
own calls. Rows whose external id exists are not created again (a retry after a lost answer).

The transfers of a batch's moves are validated together, after the batch's last run (or
before the next run of a stock or manufacturing model, which could see the stock they
move): Odoo's confirm, reserve and validate cost far less for many transfers at once than
for one at a time, and in a mix of creates and moves the moves are runs of one. Should that
joint validation be refused, the whole batch is rolled back and carried out again with each
run's transfers validated in the run's own savepoint, so that the refusal names its run.

While a batch runs, a model's `fields_get` (which Odoo's `load` asks for every call, to word
its errors) is worked out once per model and reused: in a mix of creates and moves a batch
is dozens of loads, and that description of every field was a sixth of the batch's time.
"""

import threading

import psycopg2

from odoo import api, models
from odoo.exceptions import UserError

# A transfer's validation: no backorder question (plantd says whether there is one), no SMS or
# expiry wizard.
VALIDATE_CONTEXT = {"skip_backorder": True, "skip_sms": True, "skip_expired": True}


# The `fields_get` answers of the batch running in this thread (a worker process runs one
# request at a time per thread); None outside a batch.
_BATCH = threading.local()


class _TransfersRefused(Exception):
    """The transfers of a batch's moves, validated together, were refused."""


def _sees_stock(run):
    """Whether a run could see the stock that waiting moves move: a run of creates of a stock
    or manufacturing model."""
    model = run.get("model")
    return not run.get("moves") and isinstance(model, str) and model.startswith(("stock.", "mrp."))


class Base(models.AbstractModel):
    _inherit = "base"

    @api.model
    def fields_get(self, allfields=None, attributes=None):
        """Within a batch of plantd.apply.run, each model's full description once (the same
        user, language and rights throughout the batch's one request); as Odoo's elsewhere."""
        cache = getattr(_BATCH, "fields", None)
        if cache is None or allfields or attributes:
            return super().fields_get(allfields, attributes)
        key = (self._name, self.env.uid, self.env.su, self.env.lang)
        if key not in cache:
            cache[key] = super().fields_get(allfields, attributes)
        return dict(cache[key])


class PlantdApply(models.AbstractModel):
    _name = "plantd.apply"
    _description = "plantd: a batch of shop-floor transactions in one call"

    @api.model
    def run(self, runs):
        """Carries out `runs` in order; returns one answer per run tried: {"ids": [...]}, or
        {"error": "..."} for the first run refused, which ends the batch."""
        if not isinstance(runs, list):
            raise UserError("plantd.apply.run takes a list of runs")
        _BATCH.fields = {}
        try:
            try:
                with self.env.cr.savepoint():
                    return self._run_all(runs, together=True)
            except _TransfersRefused:
                # Rolled back: again, each run's transfers in its own savepoint, to name the run.
                return self._run_all(runs, together=False)
        finally:
            _BATCH.fields = None

    def _run_all(self, runs, together):
        """With `together`, the moves' transfers wait and are validated at once (a refusal
        there raises _TransfersRefused); else each run's right after its load."""
        answers = []
        waiting = []
        found = self._existing(runs)
        for number, run in enumerate(runs):
            try:
                with self.env.cr.savepoint():
                    if together and waiting and _sees_stock(run):
                        self._finish_waiting(waiting)
                    ids, moves = self._run(run, found)
                    if moves is not None and not together:
                        self._finish_moves(moves)
                if moves is not None and together:
                    waiting.append(moves)
                answers.append({"ids": ids})
            except (psycopg2.OperationalError, _TransfersRefused):
                # A serialization failure or a lost connection: the whole call is retried
                # (by Odoo's own retry, else by plantd), never reported as a refusal. Waiting
                # transfers refused: the batch is carried out again, run by run.
                raise
            except Exception as e:  # noqa: BLE001 - any refusal ends the batch, said to plantd
                answers.append({"error": "run %d: %s" % (number, e)})
                break
        if waiting:
            self._finish_waiting(waiting)
        return answers

    def _finish_waiting(self, waiting):
        """Validates the transfers of the moves in `waiting` (recordsets, each with its run's
        context) at once, one call per distinct context; empties `waiting`."""
        by_context = {}
        for moves in waiting:
            key = repr(sorted(moves.env.context.items()))
            by_context[key] = by_context[key] | moves if key in by_context else moves
        waiting.clear()
        try:
            with self.env.cr.savepoint():
                for moves in by_context.values():
                    self._finish_moves(moves)
        except psycopg2.OperationalError:
            raise
        except Exception as e:  # noqa: BLE001 - found again run by run
            raise _TransfersRefused(str(e)) from e

    def _existing(self, runs):
        """{name: (model, id)} of the batch's external ids `plantd.<name>` that exist already
        (a retry after a lost answer), looked up once for the whole batch."""
        names = [
            row[0].split(".", 1)[1]
            for run in runs
            if isinstance(run, dict) and isinstance(run.get("rows"), list)
            for row in run["rows"]
            if isinstance(row, list) and row and isinstance(row[0], str) and row[0].startswith("plantd.")
        ]
        if not names:
            return {}
        return {
            d["name"]: (d["model"], d["res_id"])
            for d in self.env["ir.model.data"].search_read(
                [("module", "=", "plantd"), ("name", "in", names)], ["name", "model", "res_id"]
            )
        }

    def _run(self, run, found):
        """Creates the run's rows not yet there (`found` holds those that are, and gets the
        ones made here); returns their ids, and for moves the moves (in the run's context)
        whose transfers are still to be validated."""
        model = run.get("model")
        fields = run.get("fields")
        rows = run.get("rows")
        if (
            not isinstance(model, str)
            or not isinstance(fields, list)
            or not isinstance(rows, list)
            or not all(isinstance(r, list) and len(r) == len(fields) + 1 for r in rows)
        ):
            raise UserError("a run has a model, fields, and rows of an external id and one cell per field")
        Model = self.env[model].with_context(**(run.get("context") or {}))
        xmlids = [row[0] for row in rows]
        names = [x.split(".", 1)[1] for x in xmlids if x.startswith("plantd.")]
        if len(names) != len(xmlids):
            raise UserError("every row's external id is plantd.<name>")
        todo = [row for row, name in zip(rows, names) if name not in found]
        made = iter(())
        if todo:
            result = Model.load(["id"] + fields, todo)
            if not result.get("ids"):
                messages = [m.get("message", "") for m in result.get("messages", [])]
                raise UserError("; ".join(messages) or "%s.load created nothing" % model)
            made = iter(result["ids"])
        ids = []
        for name in names:
            if name in found:
                if found[name][0] != model:
                    raise UserError("plantd.%s names a %s, not a %s" % (name, found[name][0], model))
                ids.append(found[name][1])
            else:
                ids.append(next(made))
                found[name] = (model, ids[-1])
        if run.get("moves"):
            return ids, Model.env["stock.move"].browse(ids)
        return ids, None

    def _finish_moves(self, moves):
        """Each move not yet in a transfer gets one of its own; then the transfers are
        confirmed, each move picked in full, and all validated without a backorder, in the
        moves' context."""
        self = self.with_env(moves.env)
        open_moves = moves.filtered(lambda m: m.state != "done")
        if not open_moves:
            return
        pickings = open_moves.picking_id
        loose = open_moves.filtered(lambda m: not m.picking_id)
        types = {}
        for m in loose:
            key = (m.location_id.id, m.location_dest_id.id)
            if key not in types:
                types[key] = self._picking_type(m.location_id, m.location_dest_id).id
        if loose:
            pickings |= self.env["stock.picking"].create(
                [
                    {
                        "picking_type_id": types[(m.location_id.id, m.location_dest_id.id)],
                        "location_id": m.location_id.id,
                        "location_dest_id": m.location_dest_id.id,
                        "origin": m.name,
                        "move_ids": [(4, m.id)],
                    }
                    for m in loose
                ]
            )
        # Confirmed first (which reserves what is on hand), then each move picked in full:
        # Odoo fills in the demand only for a move with nothing reserved.
        pickings.action_confirm()
        by_quantity = {}
        for m in open_moves:
            by_quantity.setdefault(m.product_uom_qty, self.env["stock.move"])
            by_quantity[m.product_uom_qty] |= m
        for quantity, group in by_quantity.items():
            group.write({"quantity": quantity, "picked": quantity > 0})
        answer = pickings.with_context(
            picking_ids_not_to_backorder=pickings.ids, **VALIDATE_CONTEXT
        ).button_validate()
        if isinstance(answer, dict) and answer.get("type") == "ir.actions.act_window" and answer.get("target") == "new":
            raise UserError(
                "stock.picking.button_validate asks a question in a wizard (%s)" % answer.get("res_model")
            )
        left = moves.filtered(lambda m: m.state != "done")
        if left:
            raise UserError(
                "stock.move %d is %s after its transfer was validated, not done" % (left[0].id, left[0].state)
            )

    def _picking_type(self, source, destination):
        """A receipt from a supplier, a delivery to a customer, else internal; of the source's
        (or destination's) warehouse."""
        if source.usage == "supplier":
            code, warehouse = "incoming", destination.warehouse_id
        elif destination.usage == "customer":
            code, warehouse = "outgoing", source.warehouse_id
        else:
            code, warehouse = "internal", source.warehouse_id or destination.warehouse_id
        domain = [("code", "=", code)]
        if warehouse:
            domain.append(("warehouse_id", "=", warehouse.id))
        found = self.env["stock.picking.type"].search(domain, limit=1, order="sequence, id")
        if not found:
            raise UserError(
                "no %s operation type for a transfer from %s to %s"
                % (code, source.display_name, destination.display_name)
            )
        return found
