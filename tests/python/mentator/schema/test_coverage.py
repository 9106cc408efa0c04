"""Schemas the converter used to refuse and now follows, without giving up a valid answer:
patternProperties, required keys that properties does not list, anchors inside a pattern,
allOf parts that disagree. Every valid instance below is checked against the schema first and
must be in the grammar's language; the invalid ones are what the grammar now stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import jsonschema
import pytest

from mentator.schema.gbnf import schema_to_gbnf

GrammarFactory = Callable[[str], Any]  # conftest.gbnf
LlamaGrammar = Callable[..., Any]  # conftest.llama_grammar

# (id, schema, valid instances, JSON texts the grammar rejects)
CASES: list[tuple[str, object, list[object], list[str]]] = [
    (
        "patternProperties-closed",
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "patternProperties": {"^x-": {"type": "string"}, "[0-9]$": {"type": "boolean"}},
            "additionalProperties": False,
        },
        [{"id": 1, "x-a": "s", "k9": True}, {"x-a": "s"}, {}, {"id": 2, "x-": "", "x-b": "t"}],
        ['{"x-a": 1}', '{"other": 1}', '{"k9": "yes"}'],
    ),
    (
        "patternProperties-with-additional-schema",
        {
            "type": "object",
            "patternProperties": {"^n_": {"type": "number"}},
            "additionalProperties": {"type": "string"},
        },
        [{"n_a": 1, "b": "s"}, {"n_b": 2.5}, {"c": ""}],
        ['{"b": 1}', '{"n_a": [1]}'],
    ),
    (
        "patternProperties-only-with-a-type",
        {"type": "object", "patternProperties": {"^a": {"type": "integer"}}},
        [{"a1": 1}, {"other": [True]}, {}],
        ["[]", '"a1"'],  # other keys stay free (no properties listed), so a1 is not stopped
    ),
    (
        "patternProperties-regex-beyond-the-subset",
        {
            "type": "object",
            "patternProperties": {"(?!b)x": {"type": "integer"}},
            "additionalProperties": False,
        },
        [{"ax": 1}, {}],
        ['{"ax": "1"}'],
    ),
    (
        "required-key-not-in-properties",
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]},
        [{"a": 1, "b": "anything"}, {"b": None}, {"b": {"c": [1]}}],
        ['{"a": 1}', "{}"],
    ),
    (
        "required-key-matching-a-pattern",
        {
            "type": "object",
            "patternProperties": {"^n": {"type": "number"}},
            "required": ["num"],
            "additionalProperties": False,
        },
        [{"num": 3}, {"num": 1, "n2": 2}],
        ['{"num": "x"}', "{}", '{"num": 1, "x": 1}'],
    ),
    (
        "anchors-in-every-branch",
        {"type": "string", "pattern": "^$|^[a-f]+$"},
        ["", "abc", "f"],
        ['"xyz"', '"abx"'],
    ),
    (
        "anchor-inside-a-group",
        {"type": "string", "pattern": "(^a|b)c"},
        ["ac", "xbc", "acx", "bc"],
        ['"xac"', '"a"'],
    ),
    (
        "anchors-in-the-middle",
        {"type": "string", "pattern": "a$|^b"},
        ["xa", "bx", "b", "a"],
        ['"ax"', '"xb"'],
    ),
    (
        "hex-escape",
        {"type": "string", "pattern": "^\\x41+$"},
        ["A", "AA"],
        ['"a"', '""'],
    ),
    (
        "allOf-two-patterns",
        {"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}]},
        ["ab", "axb"],
        ['"b"', '"xab"'],  # the grammar follows the first pattern; validation the second
    ),
    (
        "allOf-anyOf-lists-combined",
        {
            "allOf": [
                {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                {"anyOf": [{"type": "string"}, {"type": "null"}]},
            ]
        },
        ["s", ""],
        ["1", "null", "true"],
    ),
    (
        "anyOf-and-oneOf-together",
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "oneOf": [{"type": "string"}, {"type": "null"}],
        },
        ["s"],
        ["1", "null"],
    ),
    # Found by the JSON-Schema-Test-Suite soundness pass (test_soundness.py): each grammar used
    # to reject the valid instances below.
    (
        "keywords-without-type-leave-other-types-free",
        {"properties": {"a": {"type": "integer"}}, "minLength": 2, "maximum": 5},
        [{"a": 1}, {}, 5, 4.5, "xy", [1], None, True],
        ['{"a": "x"}', '"x"'],
    ),
    (
        "unevaluatedProperties-sees-the-keys-of-every-matching-anyOf-branch",
        {
            "type": "object",
            "anyOf": [
                {"properties": {"foo": {"type": "string"}}, "required": ["foo"]},
                {"properties": {"bar": {"type": "string"}}, "required": ["bar"]},
            ],
            "unevaluatedProperties": False,
        },
        [{"foo": "a", "bar": "b"}, {"bar": "b"}],
        ['{"foo": 1}', "{}"],
    ),
    (
        "unevaluatedProperties-sees-the-keys-of-dependentSchemas",
        {
            "type": "object",
            "properties": {"foo": {"type": "string"}},
            "dependentSchemas": {"foo": {"properties": {"bar": {"const": "bar"}}}},
            "unevaluatedProperties": False,
        },
        [{"foo": "foo", "bar": "bar"}, {"foo": "x"}],
        ['{"foo": 1}'],
    ),
    (
        "draft-7-ref-overrides-its-siblings",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"list": {"type": "array"}},
            "properties": {"foo": {"$ref": "#/definitions/list", "maxItems": 2}},
        },
        [{"foo": [1, 2, 3]}, {"foo": []}],
        ['{"foo": 1}'],
    ),
    # Found by the same pass over optional/format: valid for the suite and for validation.
    (
        "email-as-validation-reads-it",
        {"type": "string", "format": "email"},
        ["te~st@example.com", '"joe bloggs"@example.com', "joe.bloggs@[127.0.0.1]", "a@b"],
        ['"2962"', '""'],
    ),
    (
        "date-time-with-a-long-second-fraction",
        {"type": "string", "format": "date-time"},
        ["1985-04-12T00:59:59.999999999999999Z", "1985-04-12T23:20:50.52Z"],
        ['"1985-04-12"', '"1985-04-12T23:20:50.Z"'],
    ),
    (
        "allOf-parts-with-different-annotations",
        {"allOf": [{"type": "string", "x-doc": "a", "if": {"minLength": 1}}, {"x-doc": "b"}]},
        ["s"],
        ["1"],
    ),
]


def _compact(text: str) -> str:
    """``text`` with nothing between JSON tokens (as it is when it is no JSON at all)."""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


@pytest.mark.parametrize(
    ("schema", "valid", "rejected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_grammar_accepts_every_valid_instance_and_stops_the_rest(
    schema: object, valid: list[object], rejected: list[str], gbnf: GrammarFactory
) -> None:
    typed = cast(Any, schema)
    checker = jsonschema.validators.validator_for(typed, jsonschema.Draft202012Validator)(typed)
    # The compact default takes JSON with nothing between tokens; "bounded" also takes spaced and
    # pretty-printed JSON. Both must mean the same schema.
    text = schema_to_gbnf(schema)
    compact = gbnf(text)
    bounded_text = schema_to_gbnf(schema, "bounded")
    bounded = gbnf(bounded_text)
    for instance in valid:
        checker.validate(cast(Any, instance))  # the test data itself must be right
        rendering = json.dumps(instance, ensure_ascii=False, separators=(",", ":"))
        assert compact.accepts(rendering), f"should accept {rendering!r}\n{text}"
        for rendering in (
            json.dumps(instance, ensure_ascii=False),
            json.dumps(instance, indent=2, ensure_ascii=False),
        ):
            assert bounded.accepts(rendering), f"should accept {rendering!r}\n{bounded_text}"
    for rendering in rejected:
        assert not bounded.accepts(rendering), f"should reject {rendering!r}\n{bounded_text}"
        squeezed = _compact(rendering)
        assert not compact.accepts(squeezed), f"should reject {squeezed!r}\n{text}"


def test_llama_cpp_loads_every_grammar(llama_grammar: LlamaGrammar) -> None:
    for name, schema, _valid, _rejected in CASES:
        generated = llama_grammar(schema_to_gbnf(schema), "JSON:", n_predict=0)
        assert generated.status == 200, f"{name}: {generated.error}"


def test_anchor_inside_a_repeated_group_is_still_refused() -> None:
    from mentator.schema.gbnf import SchemaToGrammarError

    with pytest.raises(SchemaToGrammarError, match="anchor inside a repeated group"):
        schema_to_gbnf({"type": "string", "pattern": "(^a)+"})


def test_open_objects_take_undeclared_keys_as_json_schema_says(gbnf: GrammarFactory) -> None:
    # The default closes an object that lists properties and says nothing about others (as
    # llama.cpp: a small model adds keys until its token limit otherwise); open_objects and an
    # explicit "additionalProperties": true follow JSON Schema's default.
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
    }
    closed = gbnf(schema_to_gbnf(schema))
    opened = gbnf(schema_to_gbnf(schema, open_objects=True))
    explicit = gbnf(schema_to_gbnf({**schema, "additionalProperties": True}))
    assert not closed.accepts('{"a":1,"b":[true]}')
    for grammar in (opened, explicit):
        assert grammar.accepts('{"a":1,"b":[true]}')
        assert grammar.accepts('{"a":2,"b":"x","c":null}')
    for grammar in (closed, opened, explicit):
        assert grammar.accepts('{"a":1}')
        assert not grammar.accepts('{"a":"x"}')
        assert not grammar.accepts('{"b":1}')  # a is required and comes first
