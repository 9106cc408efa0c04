"""A schema bounded to fit a token budget: the closing step of an answer cut off at its limit.

A grammar guarantees an answer's shape, not that it ends: a small model can write a string or an
array that never closes until ``maxTokens`` cuts it (docs/structured-output.md). When that
happened, the service may ask once more (config ``cutOffRetry``) under the grammar of
``bounded_schema(schema)``: the same schema with every string that has no ``maxLength`` held to
``STRING_CAP`` characters and every array with no ``maxItems`` to ``ITEMS_CAP`` items (never
below the schema's own ``minLength`` / ``minItems`` / tuple length). The answer is still
validated against the original schema, and the bounds are used only after the unbounded answer
did not fit, so they forbid nothing that would otherwise have been answered.

The bounds only narrow: every instance valid against the bounded schema is valid against the
original. A bound makes a subschema accept less, which narrows the whole schema only where the
subschema counts positively; under ``not``, ``if``, ``oneOf`` (one branch accepting less can
leave a single match where there were two) and ``contains`` (fewer matching items can meet a
``maxContains``) accepting less can accept MORE, so nothing below those keywords is bounded, and
when a document holds both such a keyword and a ``$ref`` (a definition bounded in one place may
be referred to from below ``not``) nothing is bounded at all.
"""

from __future__ import annotations

from typing import Any

STRING_CAP = 48  # characters of a string with no maxLength
ITEMS_CAP = 8  # items of an array with no maxItems

_MAX_DEPTH = 2000  # deeper nodes are left as they are (the converter names its own limits)

# Keywords below which a narrower subschema may widen the whole (see the module's text).
_NOT_MONOTONE = frozenset({"not", "if", "oneOf", "contains"})
_REFS = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})
# The keywords walked into (any other keyword, an annotation or an instance, is left as it is):
# a subschema, a list of subschemas, a map from names to subschemas.
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
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "prefixItems", "items"})
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
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


def _bound(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` (a schema) with its own string and array bounds added where missing."""
    types = _types(node)
    bounded = dict(node)
    if "string" in types and "maxLength" not in node and "enum" not in node and "const" not in node:
        bounded["maxLength"] = max(STRING_CAP, _count(node, "minLength"))
    if "array" in types and "maxItems" not in node:
        floor = _count(node, "minItems")
        for tuple_key in ("prefixItems", "items"):  # draft 2020-12 and draft 7 tuples
            tuple_items = node.get(tuple_key)
            if isinstance(tuple_items, list):
                floor = max(floor, len(tuple_items))
        bounded["maxItems"] = max(ITEMS_CAP, floor)
    return bounded


def _has_keys(schema: Any, names: frozenset[str]) -> bool:
    """Whether any dict of the document has one of ``names`` as a key (iterative)."""
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if names.intersection(value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def bounded_schema(schema: Any) -> Any:
    """``schema`` with unbounded strings and arrays bounded (see the module's text); a schema
    that is not a dict, or that could not be bounded soundly, comes back unchanged (the same
    object: ``bounded_schema(s) is s`` says that nothing was bounded).

    Iterative, so a deep document cannot exhaust Python's recursion limit.
    """
    if not isinstance(schema, dict):
        return schema
    if _has_keys(schema, _NOT_MONOTONE) and _has_keys(schema, _REFS):
        return schema
    bounded, added = _bounded_copy(schema)
    return bounded if added else schema


def _bounded_copy(schema: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The bounded copy and how many bounds it added (0: nothing was bounded)."""
    added = 0

    def bound(node: dict[str, Any]) -> dict[str, Any]:
        nonlocal added
        copied = _bound(node)
        added += len(copied) - len(node)  # `_bound` only ever adds keys
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
