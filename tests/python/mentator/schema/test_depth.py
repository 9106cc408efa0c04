"""Deep, wide and self-referencing schemas: converted (or refused with a message), never crashed.

JSONSchemaBench held eight schemas that made the converter raise RecursionError (a 500 from
``/check/gbnf``): recursive ``$ref`` inside ``allOf``, recursive ``$ref`` inside an ``anyOf`` that
shares keywords with its branches, and objects with thousands of properties. The schemas below
are small look-alikes of those shapes plus the other ways to be deep or long (nesting, tuples,
long keys, const values, ``$ref`` chains, regex groups).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.schema.ir import MAX_LEADING_CHAIN, MAX_NESTING
from mentator.schema.pattern import MAX_GROUP_NESTING


def grammar_of(schema: object) -> str:
    """The grammar with whitespace allowed between JSON tokens ("bounded"): these tests read
    `json.dumps` renderings with spaces. What a schema admits is the same in both modes;
    test_gbnf.py and test_coverage.py check the compact default."""
    return schema_to_gbnf(schema, "bounded")


# conftest.gbnf: GBNF text -> recogniser with .accepts(text); conftest.llama_grammar: the engine.
GrammarFactory = Callable[[str], Any]
LlamaGrammar = Callable[..., Any]

TREE_WITH_MIXIN = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "children": {
                    "type": "array",
                    "items": {"allOf": [{"$ref": "#/$defs/node"}, {"$ref": "#/$defs/named"}]},
                }
            },
        },
        "named": {"properties": {"name": {"type": "string"}}, "required": ["name"]},
    },
    "$ref": "#/$defs/node",
}

GROUPS_WITH_SHARED_KEYWORDS = {
    "type": "object",
    "additionalProperties": {"$ref": "#/$defs/entry"},
    "$defs": {
        "entry": {"oneOf": [{"type": "integer"}, {"$ref": "#/$defs/group"}]},
        "group": {
            "type": "object",
            "additionalProperties": {
                "maxProperties": 4,
                "oneOf": [{"type": "integer"}, {"$ref": "#/$defs/group"}],
            },
        },
    },
}


def nested_objects(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {
            "type": "object",
            "properties": {"a": schema},
            "required": ["a"],
            "additionalProperties": False,
        }
    return schema


def nested_any_of(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {"anyOf": [{"type": "null"}, schema]}
    return schema


def nested_const(levels: int) -> dict[str, Any]:
    value: object = 1
    for _ in range(levels):
        value = {"a": [value]}
    return {"const": value}


def ref_chain(length: int, *, leading_choice: bool = False) -> dict[str, Any]:
    defs: dict[str, Any] = {f"d{length}": {"type": "boolean"}}
    for index in range(length):
        target = {"$ref": f"#/$defs/d{index + 1}"}
        defs[f"d{index}"] = {"anyOf": [target, {"type": "null"}]} if leading_choice else target
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.fixture
def deep_recursion() -> Iterator[None]:
    """The test recogniser (conftest) recurses once per rule it enters: give it room."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 100_000))
    yield
    sys.setrecursionlimit(before)


WIDE_OBJECT = {
    "type": "object",
    "properties": {f"p{index}": {"type": "integer"} for index in range(3000)},
    "required": ["p2999"],
}
LONG_TUPLE = {
    "type": "array",
    "prefixItems": [{"const": index} for index in range(3000)],
    "minItems": 2,
}


def long_key(length: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"k" * length: {"type": "integer"}},
        "additionalProperties": {"type": "string"},
    }


# Schemas that used to crash the converter, and that it must now turn into a grammar.
CONVERTED: dict[str, object] = {
    "recursive-ref-in-allOf": TREE_WITH_MIXIN,
    "recursive-ref-in-oneOf-with-shared-keywords": GROUPS_WITH_SHARED_KEYWORDS,
    "3000-properties": WIDE_OBJECT,
    "3000-prefixItems": LONG_TUPLE,
    "3000-character-key": long_key(3000),
    "objects-nested-400-deep": nested_objects(400),
    "anyOf-nested-1000-deep": nested_any_of(1000),
    "const-nested-1000-deep": nested_const(1000),
    "ref-chain-3000-long": ref_chain(3000),
    # llama.cpp's repetition budget: (rules in the repeated group) x (count) must stay < 2000.
    "long-strings-in-a-bounded-array": {
        "type": "array",
        "maxItems": 50,
        "items": {"anyOf": [{"type": "string", "maxLength": 1999}, {"type": "null"}]},
    },
    "maxLength-2000": {"type": "string", "maxLength": 2000},
}


@pytest.mark.parametrize("schema", CONVERTED.values(), ids=CONVERTED.keys())
def test_deep_wide_and_recursive_schemas_convert(schema: object, gbnf: GrammarFactory) -> None:
    text = grammar_of(schema)
    gbnf(text)  # well-formed: every rule defined, llama.cpp's syntax
    depth = max(_nesting(line) for line in text.splitlines())
    assert depth <= MAX_NESTING + 1, f"the grammar nests {depth} parentheses deep"


def _nesting(line: str) -> int:
    deepest = level = 0
    quoted = escaped = False
    for char in line:
        if quoted:
            quoted = char != '"' or escaped
            escaped = char == "\\" and not escaped
        elif char == '"':
            quoted = True
        elif char == "(":
            level += 1
            deepest = max(deepest, level)
        elif char == ")":
            level -= 1
    return deepest


def test_recursive_ref_in_all_of_accepts_the_recursive_instances(gbnf: GrammarFactory) -> None:
    grammar = gbnf(grammar_of(TREE_WITH_MIXIN))
    leaf = {"name": "leaf"}
    # Members come in the order the (merged) properties declare them: children, then name.
    tree = {"children": [{"children": [leaf, {"children": [], "name": "b"}], "name": "a"}]}
    assert grammar.accepts(json.dumps(tree))
    assert grammar.accepts("{}")
    assert not grammar.accepts('{"children": [{"children": []}]}')  # a child needs its name
    assert not grammar.accepts('{"children": [{"name": 1}]}')


def test_recursive_ref_with_shared_keywords_accepts_nested_groups(gbnf: GrammarFactory) -> None:
    grammar = gbnf(grammar_of(GROUPS_WITH_SHARED_KEYWORDS))
    assert grammar.accepts(json.dumps({"a": 1, "b": {"c": 2, "d": {"e": {"f": 3}}}}))
    assert not grammar.accepts(json.dumps({"a": "text"}))


def test_wide_tuple_and_long_key_keep_their_meaning(
    gbnf: GrammarFactory, deep_recursion: None
) -> None:
    wide = gbnf(grammar_of(WIDE_OBJECT))
    assert wide.accepts('{"p2999": 1}')
    assert wide.accepts('{"p0": 0, "p1500": 2, "p2999": 1}')
    assert not wide.accepts('{"p1500": 2}')  # p2999 is required
    assert not wide.accepts('{"p2999": 1, "p0": 0}')  # declared order
    tuple_grammar = gbnf(grammar_of(LONG_TUPLE))
    assert tuple_grammar.accepts("[0, 1]")
    assert tuple_grammar.accepts(json.dumps(list(range(400))))
    assert not tuple_grammar.accepts("[0, 1, 3]")
    assert not tuple_grammar.accepts("[0]")
    assert not tuple_grammar.accepts("[0, 2]")
    key_grammar = gbnf(grammar_of(long_key(300)))  # the recogniser recurses per character
    assert key_grammar.accepts(json.dumps({"k" * 300: 1}))
    assert key_grammar.accepts(json.dumps({"k" * 299: "other keys", "k" * 301: "are free"}))
    assert not key_grammar.accepts(json.dumps({"k" * 300: "declared key, wrong type"}))
    assert not key_grammar.accepts(json.dumps({"k" * 299: 1}))


def test_deep_nesting_keeps_its_meaning(gbnf: GrammarFactory, deep_recursion: None) -> None:
    levels = 150
    objects = gbnf(grammar_of(nested_objects(levels)))
    assert objects.accepts('{"a": ' * levels + "7" + "}" * levels)
    assert not objects.accepts('{"a": ' * levels + '"7"' + "}" * levels)
    value = json.dumps(nested_const(levels)["const"])
    const = gbnf(grammar_of(nested_const(levels)))
    assert const.accepts(value)
    assert not const.accepts(value.replace("1", "2"))
    any_of = gbnf(grammar_of(nested_any_of(levels)))
    assert any_of.accepts("5") and any_of.accepts("null")
    assert not any_of.accepts('"5"')


REFUSED: list[tuple[str, object, str]] = [
    (
        "leading-chain",
        ref_chain(MAX_LEADING_CHAIN + 100, leading_choice=True),
        f"more than {MAX_LEADING_CHAIN} rules",
    ),
    (
        "regex-groups",
        {"type": "string", "pattern": "(" * 1000 + "a" + ")" * 1000},
        f"groups nested deeper than {MAX_GROUP_NESTING}",
    ),
    (
        "allOf-includes-itself",
        {
            "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}, {"type": "object"}]}},
            "$ref": "#/$defs/a",
        },
        "defined by itself",
    ),
]


@pytest.mark.parametrize(
    ("schema", "message"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_beyond_the_limits_is_a_refusal_naming_the_limit(schema: object, message: str) -> None:
    with pytest.raises(SchemaToGrammarError, match=message):
        grammar_of(schema)


def test_llama_cpp_loads_every_deep_grammar(llama_grammar: LlamaGrammar) -> None:
    """The real engine parses each grammar (its parser recursed to a crash on 20 000 nested
    parentheses or 100 000 leading rules; ir.py keeps grammars far below both)."""
    for name, schema in CONVERTED.items():
        generated = llama_grammar(grammar_of(schema), "JSON:", n_predict=0)
        assert generated.status == 200, f"{name}: {generated.error}"
