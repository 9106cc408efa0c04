"""The bounded schema of the closing step (`mentator.schema.budget`): its grammar only narrows —
every answer the bounded grammar lets through, the original grammar lets through — the schema
itself narrows wherever the grammar follows it, it keeps the schema's own floors, and a deep
document does not reach Python's recursion limit."""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mentator.schema.budget import (
    CHARS_PER_TOKEN,
    EXTRA_KEYS_CAP,
    ITEMS_CAP,
    LEVELS,
    STRING_CAP,
    bounded_schema,
    fitting_levels,
    longest_answer,
)
from mentator.schema.gbnf import schema_to_gbnf
from mentator_testing.gbnf_recogniser import Grammar

LONG = "x" * (STRING_CAP + 12)
SHORT = "abc"

# Schemas, each with instances on both sides of the bounds. Among them the keywords below
# which a narrower subschema widens the whole: a bound under `not`, `contains` (with
# maxContains) or `if` would make the bounded schema accept an instance the original refuses
# (the instance marked in the comment), so nothing is bounded there.
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
        "tuples and floors",
        {
            "type": "array",
            "prefixItems": [{"type": "string"}] * (ITEMS_CAP + 2),
            "minItems": ITEMS_CAP + 2,
        },
        [[SHORT] * (ITEMS_CAP + 2), [SHORT] * ITEMS_CAP, [LONG] * (ITEMS_CAP + 2)],
    ),
]


# Where only the grammar narrows: below oneOf (the grammar writes the union of the branches) and
# a definition used below `not` (which the grammar ignores); validation against the original
# schema refuses what the bounds made valid (the instance marked).
GRAMMAR_CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    (
        "oneOf",  # bounded inside: a 60-character string would match one branch, not two
        {
            "oneOf": [
                {"type": "string"},
                {"type": "string", "minLength": STRING_CAP + 12},
            ]
        },
        [LONG, SHORT, 5, LONG * 2],
    ),
    (
        "not with a $ref",  # the definition is bounded in one place, referred to below not
        {
            "$defs": {"text": {"type": "string"}},
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/text"}, "b": {"not": {"$ref": "#/$defs/text"}}},
        },
        [{"a": SHORT, "b": LONG}, {"a": LONG}, {"b": 1}, {"a": SHORT, "b": 2}],
    ),
    (
        "open objects and values of any type",
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "meta": {}},
            "required": ["id"],
            "additionalProperties": True,
        },
        [
            {"id": 1},
            {"id": 1, "meta": SHORT},
            {"id": 1, "meta": {"deep": [1, 2]}},
            {"id": 1, "meta": LONG},
            {"id": 1, **{f"k{n}": n for n in range(EXTRA_KEYS_CAP)}},
            {"id": 1, **{f"k{n}": n for n in range(EXTRA_KEYS_CAP + 2)}},
            {"id": 1, "k": [SHORT]},
        ],
    ),
    (
        "patterns",  # a pattern's unbounded quantifiers and free text repeat at most 48 times
        {
            "type": "object",
            "properties": {
                "anchored": {"type": "string", "pattern": "^[a-z]+$"},
                "free": {"type": "string", "pattern": "[0-9]{2,}"},
            },
        },
        [{"anchored": SHORT}, {"anchored": LONG}, {"free": "12"}, {"free": "x" * 200 + "12"}],
    ),
    (
        "a map of any values",
        {"type": "object", "additionalProperties": {"type": "array"}},
        [{}, {"a": []}, {"a": [SHORT, 1]}, {"a": [LONG]}, {"a": [[]] * (ITEMS_CAP + 1)}],
    ),
]


def _texts(instance: Any) -> list[str]:
    return [json.dumps(instance, separators=(",", ":"), ensure_ascii=False)]


@pytest.mark.parametrize(
    ("name", "schema", "instances"),
    CASES + GRAMMAR_CASES,
    ids=[case[0] for case in CASES + GRAMMAR_CASES],
)
def test_the_bounded_grammar_lets_through_nothing_the_original_refuses(
    name: str, schema: dict[str, Any], instances: list[Any], gbnf: Callable[[str], Grammar]
) -> None:
    original = gbnf(schema_to_gbnf(schema))
    bounded = gbnf(schema_to_gbnf(bounded_schema(schema), bounded_values=LEVELS[0]))
    refused_by_the_bounds = 0
    for instance in instances:
        for text in _texts(instance):
            if bounded.accepts(text):
                assert original.accepts(text), f"{name}: the bounds let {text} through"
            elif original.accepts(text):
                refused_by_the_bounds += 1
    assert refused_by_the_bounds, f"{name}: the bounds refused none of the instances"


def test_the_bounded_grammar_keeps_short_answers() -> None:
    schema = GRAMMAR_CASES[2][1]
    bounded = Grammar(schema_to_gbnf(bounded_schema(schema), bounded_values=LEVELS[0]))
    assert bounded.accepts('{"id":1,"meta":"abc","k0":0,"k1":null}')
    assert not bounded.accepts('{"id":1,"meta":{"deep":[1,2]}}')  # any value: a short scalar
    many = ",".join(f'"k{n}":{n}' for n in range(EXTRA_KEYS_CAP + 2))
    # other keys: at most the declared properties plus EXTRA_KEYS_CAP, less the required ones
    assert not bounded.accepts('{"id":1,' + many + "}")


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


WIDE_RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        **{f"note{n}": {"type": "string"} for n in range(12)},
        "tags": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    },
    "required": ["id"],
}


def test_the_level_is_the_loosest_whose_longest_answer_fits() -> None:
    small = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert fitting_levels(small, 128)[0][1] == LEVELS[0]
    # 12 strings of 48 characters and 8 uuids do not fit 128 tokens; the tightest level keeps
    # the required id only
    levels = fitting_levels(WIDE_RECORD, 128)
    assert [caps for _, caps in levels] == list(reversed(LEVELS))
    assert longest_answer(levels[0][0], levels[0][1]) <= 128 * CHARS_PER_TOKEN
    # with a larger budget a looser level fits, and the looser ones follow it (a fallback)
    roomy = fitting_levels(WIDE_RECORD, 400)
    assert roomy[0][1] not in (LEVELS[0], LEVELS[-1])
    assert [caps for _, caps in roomy] == list(reversed(LEVELS[: LEVELS.index(roomy[0][1]) + 1]))


def test_the_tightest_level_keeps_only_the_required_properties_of_closed_objects(
    gbnf: Callable[[str], Grammar],
) -> None:
    tight = bounded_schema(WIDE_RECORD, LEVELS[-1])
    assert tight["properties"]["id"] == {"type": "integer"}
    assert tight["properties"]["note0"] is False
    grammar = gbnf(schema_to_gbnf(tight, bounded_values=LEVELS[-1]))
    assert grammar.accepts('{"id":7}')
    assert not grammar.accepts('{"id":7,"note0":"a"}')
    assert gbnf(schema_to_gbnf(WIDE_RECORD)).accepts('{"id":7,"note0":"a"}')
    # an open object keeps them: a key left out of properties would come back as another key
    open_record = {**WIDE_RECORD, "additionalProperties": {"type": "integer"}}
    assert bounded_schema(open_record, LEVELS[-1])["properties"]["note0"] == {
        "type": "string",
        "maxLength": LEVELS[-1].string,
    }


def test_a_recursive_or_unbounded_schema_has_no_longest_answer() -> None:
    tree = {
        "$defs": {"node": {"type": "object", "properties": {"kids": {"$ref": "#/$defs/node"}}}},
        "$ref": "#/$defs/node",
    }
    assert longest_answer(bounded_schema(tree), LEVELS[0]) == math.inf
    assert longest_answer({"type": "string"}, LEVELS[0]) == math.inf  # not bounded yet
    assert longest_answer(bounded_schema({"type": "string"}), LEVELS[0]) == STRING_CAP + 2


def test_the_longest_answer_counts_what_the_grammar_does_not_enforce() -> None:
    # anyOf branches that only require a key: the grammar still lets every optional property
    # through (maxProperties does not count declared ones), so the estimate must hold them all
    schema = {
        "type": "object",
        "properties": {f"p{n}": {"type": "string"} for n in range(20)},
        "anyOf": [{"required": ["p0"]}, {"required": ["p1"]}],
    }
    assert longest_answer(bounded_schema(schema), LEVELS[0]) >= 20 * (STRING_CAP + 2)
