"""Errors, named after Odoo's and werkzeug's so that they serialize like theirs."""

import traceback
from datetime import datetime
from http import HTTPStatus

from .constants import DATETIME_FORMAT, MAGIC_FIELDS, MODEL_DESCRIPTIONS, _http_logger

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
