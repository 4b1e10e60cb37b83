"""Domains and ordering, evaluated in Python over schemaless records."""

import json
import re

TERM_OPERATORS = {'=', '!=', '<>', '<', '>', '<=', '>=', '=?', 'in', 'not in',
                  'like', 'ilike', 'not like', 'not ilike', '=like', '=ilike'}

def match_domain(record, domain):
    """Odoo's domain semantics: prefix '&', '|', '!' and an implicit AND of what remains."""
    if not isinstance(domain, (list, tuple)):
        raise ValueError(f'Invalid domain: {domain!r}')
    stack = []
    try:
        for item in reversed(domain):
            if item == '!':
                stack.append(not stack.pop())
            elif item in ('&', '|'):
                first, second = stack.pop(), stack.pop()
                stack.append(first and second if item == '&' else first or second)
            else:
                stack.append(_match_leaf(record, item))
    except IndexError:
        raise ValueError(f'Invalid domain: {domain!r}') from None
    return all(stack)

def _match_leaf(record, leaf):
    if not (isinstance(leaf, (list, tuple)) and len(leaf) == 3 and isinstance(leaf[1], str)):
        raise ValueError(f'Invalid leaf {leaf!r}')
    field, operator, value = leaf[0], leaf[1].lower(), leaf[2]
    if field in (0, 1) and operator == '=' and value == 1:  # Odoo's FALSE_LEAF and TRUE_LEAF
        return field == 1
    if not isinstance(field, str) or operator not in TERM_OPERATORS:
        raise ValueError(f'Invalid leaf {leaf!r}')
    if '.' in field:
        raise ValueError(f'Invalid leaf {leaf!r}: the emulator does not follow relations')
    have = record.get(field)
    have = False if have is None else have
    if operator == '=?':
        return value in (None, False) or _equal(have, value)
    if operator in ('=', '!=', '<>'):
        return _equal(have, value) == (operator == '=')
    if operator in ('in', 'not in'):
        values = value if isinstance(value, (list, tuple)) else [value]
        return any(_equal(have, v) for v in values) == (operator == 'in')
    if operator in ('<', '>', '<=', '>='):
        pair = _comparable(have, value)
        return pair is not None and {'<': pair[0] < pair[1], '>': pair[0] > pair[1],
                                     '<=': pair[0] <= pair[1], '>=': pair[0] >= pair[1]}[operator]
    return _like(have, value, operator)

def _comparable(a, b):
    """a and b in types that compare, or None; numbers compare with numeric strings (load() sends text)."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, number) and isinstance(b, number) or isinstance(a, str) and isinstance(b, str):
        return a, b
    try:
        if isinstance(a, number) and isinstance(b, str):
            return a, float(b)
        if isinstance(a, str) and isinstance(b, number):
            return float(a), b
    except ValueError:
        pass
    return None

def _equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):  # False also stands for "no value"
        return a is b
    pair = _comparable(a, b)
    return pair[0] == pair[1] if pair else a == b

def _like(have, value, operator):
    """The like family: 'like' and 'ilike' wrap the value in %...%, '=like' and '=ilike' use it as is."""
    negative = operator.startswith('not ')
    if have is False:
        return negative
    pattern = str(value) if operator.startswith('=') else f'%{value}%'
    regex = ''.join('.*' if c == '%' else '.' if c == '_' else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if 'ilike' in operator else 0)
    return (re.fullmatch(regex, str(have), flags) is not None) != negative

def sort_records(records, order):
    """Sorts in place by an Odoo order spec ("name desc, id"); missing values sort last, as in SQL."""
    order = order or 'id'
    for term in reversed(order.split(',')):
        parts = term.split()
        valid = 1 <= len(parts) <= 2 and re.fullmatch(r'\w+', parts[0]) and (
            len(parts) == 1 or parts[1].lower() in ('asc', 'desc'))
        if not valid:
            raise ValueError(f'Invalid "order" specified ({order}).')
        records.sort(key=lambda r, f=parts[0]: _sort_key(r.get(f)),
                     reverse=len(parts) == 2 and parts[1].lower() == 'desc')

def _sort_key(value):
    if value is None or value is False:
        return (2, '')
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
