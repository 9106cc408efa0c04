"""Refusals say where and what: the JSON Pointer of the refused keyword, the keyword, and whether
no value at all could be valid (an unsatisfiable schema) rather than a limit of the grammar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf


def grammar_of(schema: object) -> str:
    """The grammar with whitespace allowed between JSON tokens ("bounded"): these tests read
    `json.dumps` renderings with spaces. What a schema admits is the same in both modes;
    test_gbnf.py and test_coverage.py check the compact default."""
    return schema_to_gbnf(schema, "bounded")


GrammarFactory = Callable[[str], Any]  # conftest.gbnf
UNSATISFIABLE = "this schema is unsatisfiable (no value can be valid): "

# (id, schema, message start, keyword): schemas the grammar cannot follow, valid ones exist.
UNSUPPORTED: list[tuple[str, object, str, str]] = [
    (
        "dynamicRef-in-a-property",
        {"properties": {"a": {"$dynamicRef": "#node"}}},
        "#/properties/a/$dynamicRef: dynamic references are not supported",
        "$dynamicRef",
    ),
    (
        "remote-ref-in-items",
        {"type": "array", "items": {"$ref": "https://example.com/item.json"}},
        "#/items/$ref: only local references",
        "$ref",
    ),
    (
        "look-behind-in-a-nested-pattern",
        {"properties": {"p": {"properties": {"q": {"type": "string", "pattern": "(?<=a)b"}}}}},
        "#/properties/p/properties/q/pattern: look-around",
        "pattern",
    ),
    (
        "unevaluatedItems",
        {"$defs": {"t": {"unevaluatedItems": False}}, "$ref": "#/$defs/t"},
        "#/$defs/t/unevaluatedItems: unevaluatedItems is not supported",
        "unevaluatedItems",
    ),
    (
        "minItems-over-the-engine-limit",
        {"type": "array", "minItems": 2001},
        "#/minItems: minItems above 1999 is not supported",
        "minItems",
    ),
    (
        "key-with-a-slash",
        {"properties": {"a/b": {"$dynamicRef": "#x"}}},
        "#/properties/a~1b/$dynamicRef: ",
        "$dynamicRef",
    ),
]

# (id, schema, message start, keyword): no JSON value is valid for these.
UNSATISFIABLE_SCHEMAS: list[tuple[str, object, str, str]] = [
    (
        "enum-without-a-value-of-the-type",
        {
            "type": "object",
            "properties": {"a": {"type": "string", "enum": [1, 2]}},
            "required": ["a"],
        },
        f'#/properties/a/enum: {UNSATISFIABLE}no enum value has the declared type "string"',
        "enum",
    ),
    (
        "empty-enum",
        {"type": "array", "items": {"enum": []}, "minItems": 1},
        f"#/items/enum: {UNSATISFIABLE}an empty enum matches no value",
        "enum",
    ),
    (
        "allOf-types-exclude-each-other",
        {
            "type": "object",
            "properties": {"n": {"allOf": [{"type": "string"}, {"type": "integer"}]}},
            "required": ["n"],
        },
        f'#/properties/n/allOf: {UNSATISFIABLE}allOf: types "string" and "integer" exclude',
        "allOf",
    ),
    (
        "allOf-consts-differ",
        {"allOf": [{"const": 1}, {"const": 2}]},
        f"#/allOf: {UNSATISFIABLE}the const values of allOf differ",
        "allOf",
    ),
    (
        "pattern-no-string-matches",
        {"type": "string", "pattern": "/^[0-9]{4}$/"},
        f"#/pattern: {UNSATISFIABLE}no string can match the pattern",
        "pattern",
    ),
    (
        "allOf-enums-without-a-common-value",
        {"allOf": [{"enum": [1, 2]}, {"enum": [3]}]},
        f"#/allOf: {UNSATISFIABLE}the enum lists of allOf have no value in common",
        "allOf",
    ),
    (
        "required-key-forbidden",
        {
            "type": "object",
            "properties": {"a": {}},
            "required": ["b"],
            "additionalProperties": False,
        },
        f"#/required: {UNSATISFIABLE}required property 'b' is not in properties",
        "required",
    ),
    (
        "required-property-false",
        {"type": "object", "properties": {"a": False}, "required": ["a"]},
        f"#/properties/a: {UNSATISFIABLE}property 'a' is required but its schema is false",
        "required",
    ),
    (
        "minItems-over-maxItems",
        {"type": "array", "minItems": 3, "maxItems": 2},
        f"#/minItems: {UNSATISFIABLE}minItems 3 cannot be met",
        "minItems",
    ),
    (
        "maxLength-under-minLength",
        {"type": "string", "minLength": 3, "maxLength": 2},
        f"#/maxLength: {UNSATISFIABLE}maxLength 2 is smaller than minLength 3",
        "maxLength",
    ),
    (
        "every-anyOf-branch-false",
        {"anyOf": [False, False]},
        f"#/anyOf: {UNSATISFIABLE}every anyOf branch is false",
        "anyOf",
    ),
    ("false", False, f"#: {UNSATISFIABLE}the schema false matches no value", ""),
    (
        "false-in-allOf",
        {
            "type": "object",
            "properties": {"x": {"allOf": [{"type": "string"}, False]}},
            "required": ["x"],
        },
        f"#/properties/x/allOf/1: {UNSATISFIABLE}allOf contains the schema false",
        "",
    ),
    (
        "required-recursion-without-end",
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"next": {"$ref": "#/$defs/node"}},
                    "required": ["next"],
                }
            },
            "$ref": "#/$defs/node",
        },
        f"#: {UNSATISFIABLE}no finite text matches",
        "",
    ),
]


def _refusal(schema: object) -> SchemaToGrammarError:
    with pytest.raises(SchemaToGrammarError) as caught:
        grammar_of(schema)
    return caught.value


@pytest.mark.parametrize(
    ("schema", "start", "keyword"),
    [case[1:] for case in UNSUPPORTED],
    ids=[case[0] for case in UNSUPPORTED],
)
def test_unsupported_schema_names_pointer_and_keyword(
    schema: object, start: str, keyword: str
) -> None:
    error = _refusal(schema)
    assert str(error).startswith(start), str(error)
    assert error.keyword == keyword
    assert not error.unsatisfiable
    assert "unsatisfiable" not in str(error)


@pytest.mark.parametrize(
    ("schema", "start", "keyword"),
    [case[1:] for case in UNSATISFIABLE_SCHEMAS],
    ids=[case[0] for case in UNSATISFIABLE_SCHEMAS],
)
def test_unsatisfiable_schema_is_named_as_such(schema: object, start: str, keyword: str) -> None:
    error = _refusal(schema)
    assert str(error).startswith(start), str(error)
    assert error.keyword == keyword
    assert error.unsatisfiable


def test_required_recursion_without_type_is_followed_not_refused(gbnf: GrammarFactory) -> None:
    # Without "type", JSON Schema lets "next" be any non-object (5 is a valid "next"), and so
    # does the grammar: the recursion ends at any other value.
    schema = {
        "$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}, "required": ["next"]}},
        "$ref": "#/$defs/node",
    }
    grammar = gbnf(grammar_of(schema))
    assert grammar.accepts('{"next":5}')
    assert grammar.accepts('{"next":{"next":"x"}}')
    assert grammar.accepts("[]")
    assert not grammar.accepts("{}")


def test_optional_endless_recursion_is_pruned_not_refused(gbnf: GrammarFactory) -> None:
    endless = {
        "type": "object",
        "properties": {"next": {"$ref": "#/$defs/endless"}},
        "required": ["next"],
    }
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "tail": {"$ref": "#/$defs/endless"}},
        "$defs": {"endless": endless},
    }
    grammar = gbnf(grammar_of(schema))
    assert grammar.accepts('{"label": "x"}')
    assert grammar.accepts("{}")
    assert not grammar.accepts('{"tail": {"next": {}}}')  # cannot be valid, cannot be finished


def test_unsatisfiable_parts_are_dropped_where_the_schema_does_not_need_them(
    gbnf: GrammarFactory,
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "choice": {
                "anyOf": [{"allOf": [{"type": "string"}, {"type": "integer"}]}, {"type": "null"}]
            },
            "never": {"type": "string", "enum": [1]},
            "empty": {"type": "array", "items": False},
        },
    }
    grammar = gbnf(grammar_of(schema))
    assert grammar.accepts('{"choice": null, "empty": []}')
    assert not grammar.accepts('{"choice": "x"}')  # the branch no value satisfies
    assert not grammar.accepts('{"never": "x"}')  # the property no value satisfies
    assert not grammar.accepts('{"empty": [1]}')  # items: false
