"""Validation of model answers against the client's JSON Schema (reference §2.4 step 12, §2.7).

The original compiled every schema with a strict, shared Ajv: unknown keywords, ``format``,
a draft-2020-12 ``$schema`` or a reused ``$id`` all turned into 500 errors, and compiled
validators piled up in memory. Here each call builds a fresh validator of the draft named by
``$schema`` (2020-12 when absent or unknown), with format checking on for every format the
installed ``jsonschema`` extras know; unknown keywords are ignored as the specification says.

Messages keep the original's shape ``JSON Schema validation failed: <instancePath> <message>``
and, for the common keywords, Ajv's wording (``must have required property 'age'``), so clients
that show or match these texts see what they saw before.

Depth. ``jsonschema`` checks and validates recursively, about five Python frames per nesting
level of the schema or the instance (measured: jsonschema 4.26, CPython 3.13), so Python's
default limit of 1000 frames failed on schemas nested 100 levels deep, under the 256 levels
the HTTP body reader lets through, and on answers 400 levels deep. Schemas and answers up to
``MAX_DEPTH`` levels are therefore validated under a recursion limit raised to fit them (Python
3.12+ keeps Python-to-Python calls off the C stack and bounds C recursion on its own, so this
cannot overflow the C stack); deeper ones, and schemas that recurse without end, are refused
with a message instead of a RecursionError.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, cast

import referencing.exceptions
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator

FAILED_PREFIX = "JSON Schema validation failed: "

MAX_DEPTH = 512  # nesting levels of a schema or an answer that validation handles
_RECURSION_NEEDED = 10 * MAX_DEPTH + 2000  # frames per level (about 5, doubled) + headroom

_FENCED_BLOCK = re.compile(r"```(?:json)?\s*\n?([\s\S]*?)\n?```")


class SchemaProblemError(Exception):
    """The schema itself cannot be used (invalid for its draft, or an unresolvable ``$ref``)."""


def extract_json_text(text: str) -> str:
    """The content of the first fenced code block (```` ``` ```` or ```` ```json ````), else text.

    Same rule as the original: models often wrap JSON in a Markdown fence even when asked not to.
    """
    match = _FENCED_BLOCK.search(text)
    if match and match.group(1):
        return match.group(1).strip()
    return text


def _js_number(value: object) -> str:
    """A number as JavaScript prints it (``5`` not ``5.0``), for Ajv-like messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def _instance_path(error: ValidationError) -> str:
    """JSON pointer of the failing value, ``""`` for the root (Ajv's ``instancePath``)."""
    parts = (str(part).replace("~", "~0").replace("/", "~1") for part in error.absolute_path)
    return "".join("/" + part for part in parts)


def _type_names(expected: object) -> str:
    if isinstance(expected, list):
        return ",".join(str(item) for item in expected)
    return str(expected)


def _ajv_message(error: ValidationError) -> str:
    """Ajv's wording for the frequent keywords; jsonschema's own message otherwise."""
    keyword = error.validator
    expected: Any = error.validator_value
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"must be {_type_names(expected)}",
        "enum": lambda: "must be equal to one of the allowed values",
        "const": lambda: "must be equal to constant",
        "additionalProperties": lambda: "must NOT have additional properties",
        "minLength": lambda: f"must NOT have fewer than {_js_number(expected)} characters",
        "maxLength": lambda: f"must NOT have more than {_js_number(expected)} characters",
        "minItems": lambda: f"must NOT have fewer than {_js_number(expected)} items",
        "maxItems": lambda: f"must NOT have more than {_js_number(expected)} items",
        "minProperties": lambda: f"must NOT have fewer than {_js_number(expected)} properties",
        "maxProperties": lambda: f"must NOT have more than {_js_number(expected)} properties",
        "pattern": lambda: f'must match pattern "{expected}"',
        "format": lambda: f'must match format "{expected}"',
        "multipleOf": lambda: f"must be multiple of {_js_number(expected)}",
        "anyOf": lambda: "must match a schema in anyOf",
        "oneOf": lambda: "must match exactly one schema in oneOf",
    }
    if keyword == "required":
        match = re.match(r"^'(.*)' is a required property$", error.message, re.DOTALL)
        if match:
            return f"must have required property '{match.group(1)}'"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and isinstance(
        expected, (int, float)
    ):
        comparison = {
            "minimum": ">=",
            "maximum": "<=",
            "exclusiveMinimum": ">",
            "exclusiveMaximum": "<",
        }
        return f"must be {comparison[str(keyword)]} {_js_number(expected)}"
    make = messages.get(str(keyword))
    return make() if make is not None else error.message


# What `jsonschema` accepts as a schema once `_schema_type_problem` has ruled out the rest.
_Schema = dict[str, Any] | bool


def _validator_class(schema: _Schema) -> type[Validator]:
    """The validator for the schema's ``$schema`` draft; 2020-12 when absent or unknown."""
    cls: type[Validator] = validators.validator_for(schema, default=Draft202012Validator)
    return cls


def _first_problem(errors: Iterable[ValidationError]) -> ValidationError | None:
    best: ValidationError | None = best_match(errors)
    return best


def _schema_type_problem(schema: object) -> str | None:
    if schema is None:
        return "schema must be object or boolean, got null"
    if not isinstance(schema, (dict, bool)):
        return "schema must be object or boolean"
    return None


def check_schema(schema: object) -> str:
    """``""`` when ``schema`` is a usable JSON Schema, else ``JSON Schema validation failed: …``.

    Used by ``/check/jsonresponse``. Checks the schema against its draft's meta-schema
    (including that ``pattern`` values are valid regular expressions).
    """
    problem = _schema_type_problem(schema) or _too_deep(schema)
    if problem is not None:
        return FAILED_PREFIX + problem
    typed = cast(_Schema, schema)
    cls = _validator_class(typed)
    _allow_deep_recursion()
    try:
        cls.check_schema(typed)  # type: ignore[arg-type]  # the stubs say dict; bool is valid too
    except SchemaError as error:
        path = "".join("/" + str(part) for part in error.absolute_path)
        location = f"{path} " if path else ""
        return f"{FAILED_PREFIX}schema is invalid: {location}{error.message}"
    return ""


def validate_response(schema: object, instance: object) -> str | None:
    """``None`` when ``instance`` satisfies ``schema``, else the error text for the client.

    The text is ``JSON Schema validation failed: <instancePath> <message>`` for the single most
    relevant error (root errors keep the original's two spaces after the colon).
    Raises ``SchemaProblemError`` when the schema itself is unusable — that is the client's
    schema at fault, not its data, and the API answers it differently.
    """
    problem = _schema_type_problem(schema) or _too_deep(schema)
    if problem is not None:
        raise SchemaProblemError(problem)
    depth = json_depth(instance)
    if depth > MAX_DEPTH:
        return (
            f"{FAILED_PREFIX} the answer is nested {depth} levels deep; "
            f"at most {MAX_DEPTH} are supported"
        )
    typed = cast(_Schema, schema)
    cls = _validator_class(typed)
    _allow_deep_recursion()
    try:
        cls.check_schema(typed)  # type: ignore[arg-type]  # the stubs say dict; bool is valid too
    except SchemaError as error:
        raise SchemaProblemError(f"schema is invalid: {error.message}") from error
    validator = cls(typed, format_checker=cls.FORMAT_CHECKER)
    try:
        problem_found = _first_problem(validator.iter_errors(cast(Any, instance)))
    except referencing.exceptions.Unresolvable as unresolvable:
        raise SchemaProblemError(f"cannot resolve $ref: {unresolvable}") from unresolvable
    except RecursionError as error:
        # Within MAX_DEPTH only a schema that refers to itself without consuming any of the
        # instance (A = allOf[$ref A]) recurses this far.
        raise SchemaProblemError(
            "the schema cannot be evaluated: it refers to itself without end "
            "(a $ref cycle through allOf/$ref alone?)"
        ) from error
    if problem_found is None:
        return None
    return f"{FAILED_PREFIX}{_instance_path(problem_found)} {_ajv_message(problem_found)}"


def json_depth(value: object) -> int:
    """Nesting levels of a parsed JSON value (a scalar is 0, ``[]`` is 1); iterative."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((item, depth + 1) for item in node)
    return deepest


def _allow_deep_recursion() -> None:
    """Raise (never lower) the interpreter's recursion limit to what ``MAX_DEPTH`` needs."""
    if sys.getrecursionlimit() < _RECURSION_NEEDED:
        sys.setrecursionlimit(_RECURSION_NEEDED)


def _too_deep(schema: object) -> str | None:
    depth = json_depth(schema)
    if depth > MAX_DEPTH:
        return f"the schema is nested {depth} levels deep; at most {MAX_DEPTH} are supported"
    return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_answer(text: str) -> object:
    """The answer as JSON after fence extraction; ``ValueError`` (parser's text) if it is not JSON.

    ``NaN``/``Infinity`` are rejected: they are not JSON and a JSON client could not read them back.
    """
    try:
        return json.loads(extract_json_text(text), parse_constant=_reject_constant)
    except RecursionError as error:
        raise ValueError("the JSON is nested too deeply to be read") from error
