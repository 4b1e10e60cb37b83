"""Calling a model's public method, as Odoo's execute_kw and JSON-2 do."""

import inspect

from .errors import AccessError, NotFound, UnprocessableEntity

def get_public_method(model, name):
    """odoo.service.model.get_public_method."""
    if not isinstance(name, str) or name.startswith('_'):
        raise AccessError(f"Private methods (such as '{model._name}.{name}') cannot be called remotely.")
    method = getattr(model, name, None)
    if not callable(method):
        if model.env.app.major < 19:  # odoo.api.call_kw of Odoo 18
            raise AttributeError(f"The method '{name}' does not exist on the model '{model._name}'")
        raise AttributeError(f"The method '{model._name}.{name}' does not exist")
    return method

def with_context(method, kwargs, context):
    """The call's context goes to the methods that act on it (Odoo puts it in the environment)."""
    if 'context' in inspect.signature(method).parameters:
        return {**kwargs, 'context': dict(context or {})}
    return kwargs

def call_kw(model, name, args, kwargs):
    """odoo.api.call_kw, as execute_kw uses it: record methods take their ids as the first argument."""
    method = get_public_method(model, name)
    kwargs = dict(kwargs)
    context = kwargs.pop('context', None)
    result = method(*args, **with_context(method, kwargs, context))
    if name == 'create' and args and isinstance(args[0], dict):
        return result[0]  # a single dict creates one record and gives its id
    return result

def call_json2(model, name, ids, kwargs, context=None):
    """The body of Odoo 19's web_json_2_rpc controller, once authenticated."""
    try:
        method = get_public_method(model, name)
    except AttributeError as exc:
        raise NotFound(exc.args[0]) from exc
    is_model_method = getattr(method, 'api_model', False)
    if is_model_method and ids:
        raise UnprocessableEntity(f'cannot call {model._name}.{name} with ids')
    args = () if is_model_method else (ids,)
    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        raise UnprocessableEntity(exc.args[0]) from exc
    return method(*args, **with_context(method, kwargs, context))

def filter_kwargs(func, kwargs):
    """Drops the parameters func does not take, as Odoo's route wrapper does."""
    accepted = inspect.signature(func).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}
