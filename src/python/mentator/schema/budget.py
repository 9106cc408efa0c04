"""A schema bounded to fit a token budget: the closing step of an answer cut off at its limit.

A grammar guarantees an answer's shape, not that it ends: a small model can write a string or an
array that never closes, or add keys to an object without end, until ``maxTokens`` cuts it
(docs/structured-output.md). When that happened, the service may ask once more (config
``cutOffRetry``) under the grammar of ``bounded_schema(schema, caps)``: the same schema with

* every string that has no ``maxLength`` held to ``caps.string`` characters (a ``pattern``'s
  unbounded quantifiers to as many repetitions),
* every array with no ``maxItems`` to ``caps.items`` items,
* every object with no ``maxProperties`` to its declared properties plus ``caps.extra_keys``
  (the grammar bounds the keys an object may add beyond its required ones by it),
* at the tightest level, a closed object's optional properties left out,

never below the schema's own ``minLength`` / ``minItems`` / ``minProperties`` / tuple length;
and the grammar is made with ``bounded_values=caps`` (``schema.gbnf``): a value of any type
(``true``, ``{}``) becomes a short scalar, a generic object or array has few members.

``LEVELS`` holds the caps, loosest first; ``fitting_levels`` picks the loosest whose longest
answer (``longest_answer``, an estimate from above) fits the first answer's token count. The
answer is still validated against the original schema, and the bounds are used only after the
unbounded answer did not fit, so they forbid nothing that would otherwise have been answered.

What narrows is the *grammar*: every answer the bounded grammar lets through, the original
grammar lets through. The schema itself narrows wherever a subschema counts positively. Below
``not``, ``if`` and ``contains`` a narrower subschema can widen the whole, and the converter
ignores those keywords anyway (validation checks them), so nothing below them is bounded. Below
``oneOf`` the grammar writes the union of the branches (validation checks "exactly one"), so a
bounded branch narrows the grammar; a definition bounded once also changes what a ``$ref`` below
``not`` means, which the grammar ignores too. Where such a bound made an answer fail the
original schema, validation says so (a 400 naming the limit), never a 200.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from mentator.schema.pointer import PointerError, follow


@dataclass(frozen=True)
class Caps:
    """The bounds of one level of the closing step."""

    string: int  # characters of a string with no maxLength (and of a value of any type)
    items: int  # items of an array with no maxItems
    extra_keys: int  # keys beyond the declared properties of an object with no maxProperties
    optional: bool = True  # False: a closed object keeps only its required properties


# From the loosest to the tightest: the closing step takes the loosest whose longest answer
# (`longest_answer`) fits the token budget, else the tightest.
LEVELS = (Caps(48, 8, 4), Caps(24, 4, 2), Caps(12, 2, 1), Caps(8, 1, 0, optional=False))
STRING_CAP, ITEMS_CAP, EXTRA_KEYS_CAP = LEVELS[0].string, LEVELS[0].items, LEVELS[0].extra_keys
# Characters a token stands for, at least, in the answers the closing step is for (JSON with
# digits, ids, short words: SmolLM2's cut-off answers held 1.4-2.7 characters per token).
CHARS_PER_TOKEN = 1.5
_MAX_DEPTH = 2000  # deeper nodes are left as they are (the converter names its own limits)
_ESTIMATE_DEPTH = 64  # `longest_answer` calls a deeper answer unbounded
_NUMBER = 24  # characters of a number: 16 digits, a fraction, an exponent (schema.gbnf)
_FORMATS = {"date": 12, "time": 24, "date-time": 36, "uuid": 38, "ipv4": 17}

# The keywords walked into (any other keyword, an annotation or an instance, is left as it is;
# "not", "if" and "contains" on purpose: see the module's text): a subschema, a list of
# subschemas, a map from names to subschemas.
_SUBSCHEMA = frozenset(
    {
        "additionalProperties",
        "items",
        "additionalItems",
        "then",
        "else",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
_ALL_TYPES = ("object", "array", "string", "number", "boolean", "null")
# Keywords that decide an instance's type by themselves (a schema holding one is not "any").
_DECIDING = frozenset(
    {"type", "$ref", "enum", "const", "allOf", "anyOf", "oneOf", "$dynamicRef", "$recursiveRef"}
)


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {item for item in declared if isinstance(item, str)}
    return set()


def _count(node: dict[str, Any], key: str) -> int:
    value = node.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _closed(node: dict[str, Any]) -> bool:
    """Whether the grammar lets an object write no keys but its declared and pattern ones
    (``additionalProperties: false``, or properties listed and nothing said of others)."""
    additional = node.get("additionalProperties", node.get("unevaluatedProperties"))
    return additional is False or (additional is None and "properties" in node)


def _kinds(node: dict[str, Any]) -> set[str]:
    """The types a schema's instances may have: its ``type``, or every type when it says
    nothing else of them (no ``type``, ``$ref``, ``enum``, ``const`` or combination)."""
    return _types(node) or (set() if _DECIDING.intersection(node) else set(_ALL_TYPES))


def _bound(node: dict[str, Any], caps: Caps) -> dict[str, Any]:
    """``node`` (a schema) with its own string, array and object bounds added where missing
    (each bound only concerns instances of its type, so a schema of any type gets all three)."""
    types = _kinds(node)
    bounded = dict(node)
    if "string" in types and "maxLength" not in node and "enum" not in node and "const" not in node:
        bounded["maxLength"] = max(caps.string, _count(node, "minLength"))
    if "array" in types and "maxItems" not in node:
        floor = _count(node, "minItems")
        for tuple_key in ("prefixItems", "items"):  # draft 2020-12 and draft 7 tuples
            tuple_items = node.get(tuple_key)
            if isinstance(tuple_items, list):
                floor = max(floor, len(tuple_items))
        bounded["maxItems"] = max(caps.items, floor)
    declared = node.get("properties")
    required = node.get("required", [])
    if "object" in types and "maxProperties" not in node:
        count = len(declared) if isinstance(declared, dict) else 0
        bounded["maxProperties"] = max(count + caps.extra_keys, _count(node, "minProperties"))
    if (
        not caps.optional
        and isinstance(declared, dict)
        and isinstance(required, list)
        and _closed(node)
        and _count(node, "minProperties") <= len(required)
        and any(key not in required and value is not False for key, value in declared.items())
    ):
        # A closed object's optional properties may never appear (false): only in a closed
        # one, where a key left out of properties could not come back as another key.
        bounded["properties"] = {
            key: value if key in required else False for key, value in declared.items()
        }
    return bounded


def bounded_schema(schema: Any, caps: Caps = LEVELS[0]) -> Any:
    """``schema`` with unbounded strings, arrays and objects bounded by ``caps`` (see the
    module's text); a schema that is not a dict, or where nothing was bounded, comes back
    unchanged (the same object).

    Iterative, so a deep document cannot exhaust Python's recursion limit.
    """
    if not isinstance(schema, dict):
        return schema
    bounded, added = _bounded_copy(schema, caps)
    return bounded if added else schema


def _bounded_copy(schema: dict[str, Any], caps: Caps) -> tuple[dict[str, Any], int]:
    """The bounded copy and how many bounds it added (0: nothing was bounded)."""
    added = 0

    def bound(node: dict[str, Any]) -> dict[str, Any]:
        nonlocal added
        copied = _bound(node, caps)
        added += len(copied) - len(node) + (copied.get("properties") is not node.get("properties"))
        return copied

    root = bound(schema)
    # (a copied schema, or a copied map of them; its depth; whether it is a schema)
    stack: list[tuple[dict[str, Any], int, bool]] = [(root, 0, True)]
    while stack:
        container, depth, is_schema = stack.pop()
        if depth >= _MAX_DEPTH:
            continue
        for key, value in list(container.items()):
            if not is_schema or key in _SUBSCHEMA:  # a map's values are schemas
                if isinstance(value, dict):
                    container[key] = copied = bound(value)
                    stack.append((copied, depth + 1, True))
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                container[key] = copied = dict(value)
                stack.append((copied, depth + 1, False))
            if is_schema and key in _SUBSCHEMA_LISTS and isinstance(value, list):
                container[key] = items = list(value)
                for index, item in enumerate(items):
                    if isinstance(item, dict):
                        items[index] = copied = bound(item)
                        stack.append((copied, depth + 1, True))
    return root, added


def fitting_levels(schema: Any, tokens: int) -> list[tuple[Any, Caps]]:
    """The bounded schemas of the closing step for an answer of at most ``tokens`` tokens,
    the one to try first first: the loosest level whose longest answer fits, then the looser
    ones (when a tighter level has no grammar); all of them, tightest first, when none fits."""
    levels = [(bounded_schema(schema, caps), caps) for caps in LEVELS]
    budget = tokens * CHARS_PER_TOKEN
    for index, (bounded, caps) in enumerate(levels):
        if longest_answer(bounded, caps) <= budget:
            return levels[index::-1]
    return levels[::-1]


def longest_answer(schema: Any, caps: Caps) -> float:
    """An estimate from above of the characters of the longest compact answer a bounded schema
    lets the grammar write (``math.inf``: unbounded, recursive, or deeper than can be said).
    An estimate: it picks a level, it decides nothing about validity."""
    visiting: set[int] = set()
    known: dict[int, float] = {}  # by node: a document's definitions are met many times
    any_value = max(caps.string + 2, _NUMBER)

    def resolve(ref: object) -> object:
        try:
            return follow(schema, ref)
        except PointerError:
            return None  # (the converter refuses such a schema, naming the reference)

    def size(node: object, depth: int) -> float:
        if node is True or node == {}:
            return any_value
        if node is False:
            return 0.0
        if not isinstance(node, dict) or depth > _ESTIMATE_DEPTH or id(node) in visiting:
            return math.inf
        if id(node) not in known:
            visiting.add(id(node))
            try:
                known[id(node)] = own(node, depth)
            finally:
                visiting.discard(id(node))
        return known[id(node)]

    def own(node: dict[str, Any], depth: int) -> float:
        if "const" in node:
            return len(json.dumps(node["const"], ensure_ascii=False))
        if isinstance(node.get("enum"), list) and node["enum"]:
            return max(len(json.dumps(value, ensure_ascii=False)) for value in node["enum"])
        # The grammar merges a $ref, allOf parts and the chosen anyOf/oneOf branch with the
        # schema's own keywords, and it does not enforce every bound of every part (declared
        # properties, for one, are not counted against maxProperties): their sum bounds what
        # it lets through, where the shortest of them would not.
        parts = [size(resolve(node["$ref"]), depth + 1)] if "$ref" in node else []
        parts += [size(part, depth + 1) for part in node.get("allOf", []) or []]
        branches = (node.get("anyOf") or []) + (node.get("oneOf") or [])
        if branches:
            parts.append(max(size(branch, depth + 1) for branch in branches))
        types = _types(node) or (set() if parts else set(_ALL_TYPES))
        if types:
            parts.append(max(typed(kind, node, depth) for kind in types))
        return sum(parts) if parts else math.inf

    def typed(kind: str, node: dict[str, Any], depth: int) -> float:
        if kind == "string":
            if node.get("format") in _FORMATS:
                return _FORMATS[node["format"]]
            if "pattern" in node:  # its quantifiers and free text are bounded by caps.string
                return 2 * caps.string + 2
            most = node.get("maxLength")
            return float(most) + 2 if isinstance(most, int) else math.inf
        if kind in ("number", "integer"):
            return _NUMBER
        if kind in ("boolean", "null"):
            return 5
        if kind == "array":
            return array(node, depth)
        if kind == "object":
            return object_(node, depth)
        return any_value

    def array(node: dict[str, Any], depth: int) -> float:
        most = node.get("maxItems")
        if not isinstance(most, int):
            return math.inf
        prefix = node.get("prefixItems", node.get("items"))
        tuple_items = prefix if isinstance(prefix, list) else []
        rest = node.get("items") if isinstance(node.get("items"), dict) else True
        if isinstance(node.get("items"), list):
            rest = node.get("additionalItems", True)
        total = sum(size(item, depth + 1) + 1 for item in tuple_items[:most])
        if most > len(tuple_items):  # (0 x an unbounded item would be nan)
            total += (most - len(tuple_items)) * (size(rest, depth + 1) + 1)
        return total + 2

    def object_(node: dict[str, Any], depth: int) -> float:
        declared: dict[str, Any] = node.get("properties") or {}
        required: list[Any] = node.get("required") or []
        if not isinstance(declared, dict) or not isinstance(required, list):
            return math.inf  # not a schema the converter takes
        total = 2.0
        for key, value in declared.items():
            if value is not False:
                total += len(json.dumps(key, ensure_ascii=False)) + 2 + size(value, depth + 1)
        values = [
            value for value in (node.get("patternProperties") or {}).values() if value is not False
        ]
        if not _closed(node):
            values.append(node.get("additionalProperties", node.get("unevaluatedProperties", True)))
        if values:
            most = node.get("maxProperties")
            if not isinstance(most, int):
                return math.inf
            others = most - len(required)
            if others > 0:
                value_size = max(size(value, depth + 1) for value in values)
                total += others * (caps.string + 4 + value_size)
        return total

    return size(schema, 0)
