"""The bounded schema of the closing step (`mentator.schema.budget`): it only narrows — every
instance the bounded schema accepts, the original accepts — it keeps the schema's own floors,
and a deep document does not reach Python's recursion limit."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mentator.schema.budget import ITEMS_CAP, STRING_CAP, bounded_schema
from mentator.schema.gbnf import schema_to_gbnf

LONG = "x" * (STRING_CAP + 12)
SHORT = "abc"

# Schemas, each with instances on both sides of the bounds. Among them the keywords below
# which a narrower subschema widens the whole: a bound under `not`, `oneOf`, `contains`
# (with maxContains) or `if` would make the bounded schema accept an instance the original
# refuses (the instance marked in the comment).
CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    (
        "object of strings and arrays",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "code": {"type": "string", "maxLength": 200},
            },
            "required": ["name"],
        },
        [
            {"name": SHORT},
            {"name": LONG},
            {"name": SHORT, "tags": [SHORT] * 3},
            {"name": SHORT, "tags": [SHORT] * (ITEMS_CAP + 3)},
            {"name": SHORT, "tags": [LONG]},
            {"name": SHORT, "code": LONG},
            {"tags": []},
        ],
    ),
    (
        "not",  # bounded inside: LONG would become valid
        {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
        [{"a": LONG}, {"a": SHORT}, {"a": 1}],
    ),
    (
        "oneOf",  # bounded inside: a 60-character string would match one branch, not two
        {
            "oneOf": [
                {"type": "string"},
                {"type": "string", "minLength": STRING_CAP + 12},
            ]
        },
        [LONG, SHORT, 5],
    ),
    (
        "contains with maxContains",  # bounded inside: [LONG, SHORT] would contain one string
        {"type": "array", "contains": {"type": "string"}, "maxContains": 1},
        [[LONG, SHORT], [SHORT], [1, SHORT], [LONG]],
    ),
    (
        "if / then",  # bounded inside if: LONG would fail the condition, skip then's maxLength
        {"if": {"type": "string"}, "then": {"maxLength": 10}},
        [LONG, SHORT, 3, ""],
    ),
    (
        "not with a $ref",  # the definition is bounded in one place, referred to below not
        {
            "$defs": {"text": {"type": "string"}},
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/text"}, "b": {"not": {"$ref": "#/$defs/text"}}},
        },
        [{"a": SHORT, "b": LONG}, {"a": LONG}, {"b": 1}],
    ),
    (
        "tuples and floors",
        {
            "type": "array",
            "prefixItems": [{"type": "string"}] * (ITEMS_CAP + 2),
            "minItems": ITEMS_CAP + 2,
        },
        [[SHORT] * (ITEMS_CAP + 2), [SHORT] * ITEMS_CAP, [LONG] * (ITEMS_CAP + 2)],
    ),
]


@pytest.mark.parametrize(("name", "schema", "instances"), CASES, ids=[case[0] for case in CASES])
def test_the_bounded_schema_accepts_nothing_the_original_refuses(
    name: str, schema: dict[str, Any], instances: list[Any]
) -> None:
    original = copy.deepcopy(schema)
    bounded = bounded_schema(schema)
    assert schema == original, "the caller's schema was changed in place"
    Draft202012Validator.check_schema(bounded)
    for instance in instances:
        if Draft202012Validator(bounded).is_valid(instance):
            assert Draft202012Validator(original).is_valid(
                instance
            ), f"{name}: the bounded schema accepts {instance!r}, the original refuses it"


def test_unbounded_strings_and_arrays_get_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["a" * 60]},
            "code": {"type": "string", "maxLength": 200},
        },
        "$defs": {"more": {"type": ["string", "null"]}},
        "anyOf": [{"type": "array"}, {"type": "object"}],
    }
    bounded = bounded_schema(schema)
    properties = bounded["properties"]
    assert properties["name"]["maxLength"] == STRING_CAP
    assert properties["tags"]["maxItems"] == ITEMS_CAP
    assert properties["tags"]["items"]["maxLength"] == STRING_CAP
    assert "maxLength" not in properties["kind"]  # an enum is bounded by its values
    assert properties["code"]["maxLength"] == 200  # the schema's own bound stays
    assert bounded["$defs"]["more"]["maxLength"] == STRING_CAP
    assert bounded["anyOf"][0]["maxItems"] == ITEMS_CAP
    assert "maxLength" not in bounded["properties"]  # a map of schemas is not a schema


def test_the_schemas_own_floors_are_kept() -> None:
    strings = bounded_schema({"type": "string", "minLength": STRING_CAP + 20})
    assert strings["maxLength"] == STRING_CAP + 20
    arrays = bounded_schema({"type": "array", "minItems": ITEMS_CAP + 5})
    assert arrays["maxItems"] == ITEMS_CAP + 5
    tuples = bounded_schema({"type": "array", "prefixItems": [{"type": "integer"}] * 12})
    assert tuples["maxItems"] == 12
    draft7_tuples = bounded_schema({"type": "array", "items": [{"type": "integer"}] * 10})
    assert draft7_tuples["maxItems"] == 10


def test_a_bounded_schema_still_has_a_grammar() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "array"}},
        "required": ["city"],
    }
    grammar = schema_to_gbnf(bounded_schema(schema))
    assert grammar != schema_to_gbnf(schema)


def test_a_deep_schema_does_not_reach_the_recursion_limit() -> None:
    depth = sys.getrecursionlimit() + 500
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    bounded = bounded_schema(schema)
    node = bounded
    levels = 0
    while "properties" in node:
        node = node["properties"]["a"]
        levels += 1
    assert levels == depth
    # Below the walk's depth limit every level is bounded; deeper nodes are left as they are.
    shallow: dict[str, Any] = {"type": "string"}
    for _ in range(50):
        shallow = {"type": "object", "properties": {"a": shallow}}
    node = bounded_schema(shallow)
    while "properties" in node:
        node = node["properties"]["a"]
    assert node == {"type": "string", "maxLength": STRING_CAP}
