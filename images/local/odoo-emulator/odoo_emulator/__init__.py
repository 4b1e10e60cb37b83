"""A stand-in for Odoo's external interfaces, for plantd's tests (see README.md beside this file).

It answers the requests plantd makes of Odoo -- /web/health, JSON-RPC (/jsonrpc and
/web/webclient/version_info), Odoo 19's JSON-2 API (/json/2/<model>/<method>) and the bus
websocket -- with Odoo's shapes, status codes and error formats. It has the models of a Community
Odoo with stock and mrp and no others; their records are mostly schemaless, kept in PostgreSQL,
attachments in an Odoo-style filestore. It knows a few required fields, datetimes, and just enough
stock and mrp logic for plantd's shipped kinds (transfers, manufacturing orders, time logs), plus
one constraint. Only the standard library and psycopg2 are used.

`python3 -m odoo_emulator --config odoo.conf` runs it (`__main__.py`). The modules, from the
bottom up: `constants` (Odoo's names, the fields it knows, the loggers), `errors`, `config`,
`database`, `domains`, `store`, `models` (the environment and the generic model), `stock` (the
stock and mrp logic, which adds its models to `models.MODELS`), `rpc` (execute_kw and JSON-2
calls), `app` (the JSON-RPC services), `websocket`, `server` (the HTTP routes).
"""

from . import stock  # noqa: F401 - adds the stock and mrp models to models.MODELS
