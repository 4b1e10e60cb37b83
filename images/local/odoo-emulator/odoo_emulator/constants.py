"""Constants and loggers the whole emulator shares: Odoo's names for things, the fields it knows."""

import logging
import re

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
