# plantd's own Odoo module: one call applies a batch of the plant's transactions.
{
    "name": "plantd apply",
    "version": "18.0.1.1.0",
    "summary": "Applies a batch of plantd's shop-floor transactions in one call",
    "description": """
plantd applies the plant's journal to Odoo in seq order, exactly once. Without this module
each run of creates or stock moves costs plantd several JSON-RPC calls; with it, a whole
batch is one call and one database transaction, carried out here in the same order and with
the same public methods (load, action_confirm, button_validate) as plantd's calls would use.
The caller's access rights apply: nothing runs as superuser.
""",
    "category": "Hidden/Tools",
    "author": "plantd",
    "depends": ["base"],
    "data": [],
    "installable": True,
    "application": False,
    "license": "Other OSI approved licence",
}
