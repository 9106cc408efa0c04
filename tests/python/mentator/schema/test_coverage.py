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
    checker = jsonschema.Draft202012Validator(cast(Any, schema))
    # The compact default takes JSON with nothing between tokens; "bounded" also takes spaced and
    # pretty-printed JSON. Both must mean the same schema.
    text = schema_to_gbnf(schema)
    compact = gbnf(text)
    bounded_text = schema_to_gbnf(schema, "bounded")
    bounded = gbnf(bounded_text)
    for instance in valid:
        checker.validate(instance)  # the test data itself must be right
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
