"""Request validation with the original's coercion rules and error wording.

The original validated every request with Fastify's Ajv (``coerceTypes: "array"``, first error
only) and clients see its messages verbatim (reference §2.1), e.g.
``body must have required property 'model'`` or ``body/contextSize must be >= 512``. This module
re-implements the small subset of JSON Schema the request DTOs use — ``type`` (one type),
``enum``, ``minimum``/``maximum``, ``required``, ``additionalProperties`` (a schema),
``properties``, ``items`` — together with Ajv's coercions:

* to string: numbers and booleans are printed the JavaScript way, ``null`` becomes ``""``;
* to number/integer: numeric strings, booleans (1/0) and ``null`` (0);
* to boolean: ``"true"``/``"false"``, 1/0 and ``null`` (false);
* to array: a scalar or ``null`` is wrapped (``"*"`` → ``["*"]``); a one-item array given where a
  scalar is expected is unwrapped first (``[5]`` → 5).

Keywords run in Ajv's order (type, then ``enum``, then number limits, then ``required`` in listed
order, then ``properties`` in declared order, then ``items``), so the first error reported is the
one the original reported. Ajv's ``enum`` message (``must be equal to one of the allowed
values``) is followed by the values, so that the client learns what to send. The schemas are
plain JSON Schema dicts, so the same dicts document the API in the OpenAPI document.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

JsonSchema = dict[str, Any]


class RequestValidationError(Exception):
    """A request does not match its schema; ``str(error)`` is the Ajv-style message."""


_HEX = re.compile(r"^[+-]?0[xX][0-9a-fA-F]+$")
_OCT = re.compile(r"^0[oO][0-7]+$")
_BIN = re.compile(r"^0[bB][01]+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def js_number_from_string(text: str) -> float | None:
    """JavaScript's ``+text`` for the cases Ajv accepts (``text == +text``); None if NaN."""
    stripped = text.strip()
    if stripped == "":
        return 0.0
    if _DECIMAL.match(stripped):
        return float(stripped)
    if stripped in ("Infinity", "+Infinity"):
        return math.inf
    if stripped == "-Infinity":
        return -math.inf
    if _HEX.match(stripped) and not stripped.startswith(("+", "-")):
        return float(int(stripped, 16))
    if _OCT.match(stripped):
        return float(int(stripped[2:], 8))
    if _BIN.match(stripped):
        return float(int(stripped[2:], 2))
    return None


def js_number_to_string(value: float | int) -> str:
    """JavaScript's ``String(number)`` for the values JSON can carry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def normalize_number(value: float | int) -> float | int:
    """An integral float as int, as JavaScript prints it (``3.0`` → ``3``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "number":
        return _is_number(value) and math.isfinite(value)
    if expected == "integer":
        return _is_number(value) and math.isfinite(value) and float(value).is_integer()
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "null":
        return value is None
    raise ValueError(f"schema type {expected!r} is not supported by the request validator")


def _coerce_scalar(expected: str, value: Any) -> tuple[bool, Any]:
    """Ajv's coercion of one value to ``expected``: (True, coerced) or (False, value)."""
    if expected == "string":
        if _is_number(value) or isinstance(value, bool):
            return True, js_number_to_string(value)
        if value is None:
            return True, ""
    elif expected in ("number", "integer"):
        if isinstance(value, bool):
            return True, int(value)
        if value is None:
            return True, 0
        if isinstance(value, str) and value != "":
            number = js_number_from_string(value)
            if number is not None:
                return True, normalize_number(number)
    elif expected == "boolean":
        if value in ("true", "false") and isinstance(value, str):
            return True, value == "true"
        if _is_number(value) and value in (0, 1):
            return True, value == 1
        if value is None:
            return True, False
    elif expected == "null":
        if value == "" or (_is_number(value) and value == 0) or value is False:
            return True, None
    elif expected == "array" and (
        isinstance(value, (str, bool)) or _is_number(value) or value is None
    ):
        return True, [value]
    return False, value


def _coerce_type(expected: str, value: Any, path: str) -> Any:
    if _type_ok(expected, value):
        return normalize_number(value) if _is_number(value) else value
    candidate = value
    if expected != "array" and isinstance(candidate, list) and len(candidate) == 1:
        candidate = candidate[0]
        if _type_ok(expected, candidate):
            return normalize_number(candidate) if _is_number(candidate) else candidate
    coerced, result = _coerce_scalar(expected, candidate)
    if coerced and _type_ok(expected, result):
        return result
    raise RequestValidationError(f"{path} must be {expected}")


def _json_equal(left: Any, right: Any) -> bool:
    """JSON equality as Ajv's ``enum`` sees it: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) or _is_number(right):
        return _is_number(left) and _is_number(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return type(left) is type(right) and left == right


def _allowed_text(allowed: list[Any]) -> str:
    """The allowed values for a message: strings as they are, anything else as JSON."""
    return ", ".join(item if isinstance(item, str) else json.dumps(item) for item in allowed)


def validate(schema: JsonSchema, value: Any, path: str = "body") -> Any:
    """Coerce ``value`` to ``schema`` and return the coerced copy; the first error raises.

    ``path`` is the Ajv data path prefix used in messages (``body``, ``querystring``).
    """
    expected = schema.get("type")
    if isinstance(expected, str):
        value = _coerce_type(expected, value, path)
    allowed = schema.get("enum")
    if isinstance(allowed, list) and not any(_json_equal(value, item) for item in allowed):
        raise RequestValidationError(
            f"{path} must be equal to one of the allowed values: {_allowed_text(allowed)}"
        )
    if _is_number(value):
        maximum = schema.get("maximum")
        if maximum is not None and value > maximum:
            raise RequestValidationError(f"{path} must be <= {js_number_to_string(maximum)}")
        minimum = schema.get("minimum")
        if minimum is not None and value < minimum:
            raise RequestValidationError(f"{path} must be >= {js_number_to_string(minimum)}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise RequestValidationError(f"{path} must have required property '{name}'")
        properties: dict[str, JsonSchema] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            value = dict(value)
            for name in value:
                if name not in properties:
                    value[name] = validate(additional, value[name], f"{path}/{name}")
        if properties:
            value = dict(value)
            for name, sub_schema in properties.items():
                if name in value:
                    value[name] = validate(sub_schema, value[name], f"{path}/{name}")
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            value = [validate(items, item, f"{path}/{index}") for index, item in enumerate(value)]
    return value
