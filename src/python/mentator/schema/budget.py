"""A schema bounded to fit a token budget: the closing step of an answer cut off at its limit.

A grammar guarantees an answer's shape, not that it ends: a small model can write a string or an
array that never closes until ``maxTokens`` cuts it (docs/structured-output.md). When that
happened, the service may ask once more (config ``cutOffRetry``) under the grammar of
``bounded_schema(schema)``: the same schema with every string that has no ``maxLength`` held to
``STRING_CAP`` characters and every array with no ``maxItems`` to ``ITEMS_CAP`` items (never
below the schema's own ``minLength`` / ``minItems``). The bounds only narrow the schema — every
answer of the bounded schema is valid against the original, and the answer is still validated
against the original — and they are used only after the unbounded answer did not fit, so they
forbid nothing that would otherwise have been answered.
"""

from __future__ import annotations

from typing import Any

STRING_CAP = 48  # characters of a string with no maxLength
ITEMS_CAP = 8  # items of an array with no maxItems

_MAX_DEPTH = 2000  # deeper nodes are left as they are (the converter names its own limits)


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {item for item in declared if isinstance(item, str)}
    return set()


def _bound(node: dict[str, Any]) -> dict[str, Any]:
    types = _types(node)
    bounded = dict(node)
    if "string" in types and "maxLength" not in node and "enum" not in node and "const" not in node:
        floor = node.get("minLength")
        floor = floor if isinstance(floor, int) and not isinstance(floor, bool) else 0
        bounded["maxLength"] = max(STRING_CAP, floor)
    if "array" in types and "maxItems" not in node:
        floor = node.get("minItems")
        floor = floor if isinstance(floor, int) and not isinstance(floor, bool) else 0
        prefix = node.get("prefixItems")
        if isinstance(prefix, list):
            floor = max(floor, len(prefix))
        bounded["maxItems"] = max(ITEMS_CAP, floor)
    return bounded


def bounded_schema(schema: Any) -> Any:
    """``schema`` with unbounded strings and arrays bounded (see the module's text).

    Walks every dict of the document (subschemas under any keyword, ``$defs`` included: keys
    of ``properties`` that are not schemas are dicts of schemas, which the walk also visits
    harmlessly — a property NAMED "type" maps to a schema, never to a type name string).
    Iterative, so a deep document cannot exhaust Python's recursion limit.
    """
    if not isinstance(schema, dict):
        return schema
    root: dict[str, Any] = _bound(schema)
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(root, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= _MAX_DEPTH:
            continue
        keys = range(len(container)) if isinstance(container, list) else list(container)
        for key in keys:
            value = container[key]  # type: ignore[index]
            if isinstance(container, dict) and key in ("enum", "const", "default", "examples"):
                continue  # instances, not schemas
            if isinstance(value, dict):
                copy = _bound(value) if _is_schema_slot(container, key) else dict(value)
                container[key] = copy  # type: ignore[index]
                stack.append((copy, depth + 1))
            elif isinstance(value, list):
                copy_list = list(value)
                container[key] = copy_list  # type: ignore[index]
                stack.append((copy_list, depth + 1))
    return root


def _is_schema_slot(container: dict[str, Any] | list[Any], key: object) -> bool:
    """Whether the dict at ``container[key]`` is a schema (bounded) rather than a map of them."""
    if isinstance(container, list):
        return True  # items of allOf / anyOf / oneOf / prefixItems / items (draft 4 lists)
    return key not in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
