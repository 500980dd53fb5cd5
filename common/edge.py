"""The API's edge: what a request may carry before any view, serializer or database sees it.

Postgres ``jsonb`` and ``text`` cannot hold U+0000, psycopg cannot encode a lone surrogate, Python's JSON
parser recurses once per level of nesting and our template rendering does too, and bigint columns stop at
2^63 - 1. So a JSON body is parsed here with bounds on its size, its nesting, its integers and its floats,
and every string in it (keys too) is checked; a query string is checked the same way. Each refusal is a 4xx
with a stable code (docs/errors.md), never a 500 further in.

``storable`` is the other half: text that did not come through the edge (an agent's output) is escaped
rather than refused, so that it can always be stored.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser

# A surrogate code point left in a decoded str is lone: json.loads joins a valid escaped pair into one char.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
INT_MAX = 2**63 - 1


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request.too_large"
    default_detail = "The request body is too large."


class UnstorableText(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "request.unstorable_text"
    default_detail = "Text may not contain U+0000 or unpaired surrogates."


class TooDeep(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "request.too_deep"
    default_detail = "The JSON body is nested too deeply."


class NumberOutOfRange(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "request.number_out_of_range"
    default_detail = "A number in the body is out of range."


def max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", 1_048_576))


def max_depth() -> int:
    return int(getattr(settings, "API_MAX_JSON_DEPTH", 32))


def unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NumberOutOfRange(f"{text[:40]} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise NumberOutOfRange(f"integers must be below 2^63 in magnitude, not {text[:40]}...")
    value = int(text)
    if abs(value) > INT_MAX:
        raise NumberOutOfRange(f"integers must be below 2^63 in magnitude, not {text}")
    return value


def _no_constant(text: str) -> Any:
    raise NumberOutOfRange(f"{text} is not a JSON number")


def _depth_before_parsing(raw: str, limit: int) -> None:
    """Refuse nesting deeper than ``limit`` by counting brackets outside strings, before the recursive parser
    sees it (10,000 levels blow Python's stack)."""
    depth = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                raise TooDeep(f"JSON may be nested at most {limit} levels deep")
        elif char in "]}":
            depth -= 1


def check_strings(value: Any) -> None:
    """Raise UnstorableText if any string in ``value`` (keys included) cannot be stored by Postgres."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if unstorable(item):
                raise UnstorableText()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(raw: bytes) -> Any:
    """Parse a request body with every bound of the edge; raises an APIException subclass (4xx)."""
    if len(raw) > max_body_bytes():
        raise RequestTooLarge(f"the body may be at most {max_body_bytes()} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise exceptions.ParseError(f"the body is not UTF-8: {exc.reason}") from None
    _depth_before_parsing(text, max_depth())
    try:
        data = json.loads(text, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise exceptions.ParseError(f"JSON parse error: {exc}") from None
    check_strings(data)
    return data


class StrictJSONParser(BaseParser):
    """DRF's JSON parser with the edge's bounds (see the module doc)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        if stream is None:
            return {}
        return parse_json(stream.read(max_body_bytes() + 1))


def storable(value: Any) -> Any:
    """``value`` with every U+0000 and lone surrogate in its strings (keys too) replaced by its escape
    (``\\u0000``), so that Postgres can hold it. Leaves everything else as is."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value) if unstorable(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
