from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import jsonschema
import pytest

from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf

# What the grammar deliberately does not enforce; validation checks it (schema/gbnf.py).
LEFT_TO_VALIDATION = {
    "oneOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "uniqueItems",
    "contains",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "not",
    "if",
}

# conftest.llama_grammar: (grammar, prompt) -> Generated(status, text, complete, error)
LlamaGrammar = Callable[[str, str], Any]

GrammarFactory = Callable[[str], Any]

UUID = "123e4567-e89b-12d3-a456-426614174000"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

# (id, schema, valid instances, invalid JSON texts)
CASES: list[tuple[str, object, list[object], list[str]]] = [
    (
        "people-array",
        {"type": "array", "items": PERSON},
        [[], [{"name": "Ann", "age": 31}], [{"name": "B", "age": 1.5}, {"name": "C", "age": -2e3}]],
        [
            '[{"age": 1, "name": "x"}]',
            '[{"name": "x"}]',
            '{"name": "x", "age": 1}',
            '[{"name": "x", "age": 1, "z": 1}]',
        ],
    ),
    (
        "optional-properties",
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "string"},
                "c": {"type": "boolean"},
            },
            "required": ["b"],
        },
        [{"b": "x"}, {"a": 1, "b": ""}, {"b": "y", "c": True}, {"a": -3, "b": "z", "c": False}],
        [
            "{}",
            '{"a": 1}',
            '{"b": "x", "a": 1}',
            '{, "b": "x"}',
            '{"b": "x",}',
            '{"a": 1.5, "b": "x"}',
        ],
    ),
    (
        "all-optional",
        {"type": "object", "properties": {"x": {"type": "null"}, "y": {"type": "integer"}}},
        [{}, {"x": None}, {"y": 7}, {"x": None, "y": 0}],
        ['{"y": 1, "x": null}', '{"y": 01}', "{,}", '{"x": null,}'],
    ),
    (
        "nested-objects",
        {
            "type": "object",
            "properties": {
                "user": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["id", "tags"],
                    "additionalProperties": False,
                }
            },
            "required": ["user"],
            "additionalProperties": False,
        },
        [{"user": {"id": 1, "tags": []}}, {"user": {"id": 2, "tags": ["a", 'b"c', "é"]}}],
        [
            '{"user": {"id": 1}}',
            '{"user": {"id": "1", "tags": []}}',
            '{"user": {"id": 1, "tags": [1]}}',
        ],
    ),
    (
        "string-enum",
        {"type": "string", "enum": ["red", "green", "blue"]},
        ["red", "blue"],
        ['"yellow"', '"Red"', "red", '"red "'],
    ),
    (
        "mixed-enum-and-const",
        {
            "type": "object",
            "properties": {
                "k": {"enum": [1, "one", None, True, [1, 2], {"a": 1}]},
                "v": {"const": "fixed"},
            },
            "required": ["k", "v"],
        },
        [
            {"k": 1, "v": "fixed"},
            {"k": None, "v": "fixed"},
            {"k": [1, 2], "v": "fixed"},
            {"k": {"a": 1}, "v": "fixed"},
        ],
        ['{"k": 2, "v": "fixed"}', '{"k": 1, "v": "other"}', '{"k": [2, 1], "v": "fixed"}'],
    ),
    (
        "integers",
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 3},
        [[0], [1, 22, 333], [9007199254740]],
        ["[]", "[-1]", "[1.5]", "[1, 2, 3, 4]", "[01]", "[1e3]"],
    ),
    (
        "numbers",
        {"type": "number"},
        [0, -0.5, 3.25, 1e-7, 12345678],
        ["01", "1.", ".5", "+1", "1e", '"1"', "NaN"],
    ),
    (
        "type-list-nullable",
        {"type": ["string", "null"], "maxLength": 3},
        ["", "abc", None],
        ['"abcd"', "0", "nul"],
    ),
    (
        "any-of",
        {
            "anyOf": [
                {"type": "integer"},
                {"type": "object", "properties": {"t": {"const": "x"}}, "required": ["t"]},
            ]
        },
        [5, {"t": "x"}],
        ['"5"', '{"t": "y"}', "{}", "true"],
    ),
    (
        "one-of-with-shared-base",
        {
            "type": "object",
            "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}},
            "oneOf": [{"required": ["kind"]}, {"required": ["n"]}],
            "additionalProperties": False,
        },
        [{"kind": "a"}, {"n": 1}],
        ['{"other": 1}', '{"n": "x"}'],
    ),
    (
        "defs-ref",
        {
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    "required": ["x", "y"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
            "required": ["from", "to"],
            "additionalProperties": False,
        },
        [{"from": {"x": 0, "y": 1}, "to": {"x": 2.5, "y": -1}}],
        ['{"from": {"x": 0}, "to": {"x": 2, "y": 1}}', '{"from": {"x": 0, "y": 1}}'],
    ),
    (
        "recursive-ref",
        {
            "definitions": {
                "node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                    },
                    "required": ["v"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/definitions/node",
        },
        [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}, {"v": 4}]}],
        ['{"v": 1, "kids": [{"kids": []}]}', '{"kids": []}'],
    ),
    (
        "all-of-merge",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ],
            "unevaluatedProperties": False,
        },
        [{"a": "x", "b": 1}],
        ['{"a": "x"}', '{"b": 1}', '{"a": "x", "b": 1, "c": 2}'],
    ),
    (
        "additional-properties-schema",
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
            "additionalProperties": {"type": "string"},
        },
        [{"id": 1}, {"id": 1, "x": "a", "ident": "b", "i": "c"}],
        ['{"id": 1, "x": 2}', '{"id": 1, "id": "dup"}', '{"x": "a"}'],
    ),
    (
        "free-object",
        {"type": "object"},
        [{}, {"a": [1, {"b": None}], "c": "d"}],
        ["[]", '{"a" 1}', '{"a": }'],
    ),
    (
        "tuple-prefix-items",
        {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "integer"}],
            "items": False,
            "minItems": 1,
        },
        [["a"], ["a", 1]],
        ["[]", "[1]", '["a", "b"]', '["a", 1, 2]'],
    ),
    (
        "string-formats",
        {
            "type": "object",
            "properties": {
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "date-time"},
                "u": {"type": "string", "format": "uuid"},
                "e": {"type": "string", "format": "email"},
            },
            "required": ["d", "t", "u", "e"],
        },
        [
            {
                "d": "2024-02-29",
                "t": "2024-02-29T10:20:30.5Z",
                "u": UUID,
                "e": "a.b@example.org",
            }
        ],
        [
            '{"d": "2024-13-01", "t": "2024-01-01T10:20:30Z", "u": "' + UUID + '", "e": "a@b.c"}',
            '{"d": "2024-01-01", "t": "2024-01-01 10:20:30", "u": "' + UUID + '", "e": "a@b.c"}',
            '{"d": "2024-01-01", "t": "2024-01-01T10:20:30Z", "u": "123", "e": "a@b.c"}',
            '{"d": "2024-01-01", "t": "2024-01-01T10:20:30Z", "u": "' + UUID + '", "e": "nobody"}',
        ],
    ),
    (
        "pattern",
        {"type": "string", "pattern": "^[A-Z]{2}-\\d{3,4}(-x)?$"},
        ["AB-123", "ZZ-9999-x"],
        ['"ab-123"', '"AB-12"', '"AB-12345"', '"AB-123-y"'],
    ),
    (
        "unanchored-pattern",
        {"type": "string", "pattern": "id\\d"},
        ["id1", "my id7 here"],
        ['"id"', '"ix1"'],
    ),
    (
        "boolean-and-true-schema",
        {
            "type": "object",
            "properties": {"flag": {"type": "boolean"}, "any": True},
            "required": ["flag", "any"],
        },
        [{"flag": True, "any": [1, "x", None]}, {"flag": False, "any": {}}],
        ['{"flag": 1, "any": 1}', '{"flag": true}'],
    ),
    (
        "many-properties-linear-rules",
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "integer"} for i in range(9)},
            "required": ["p3", "p8"],
        },
        [
            {"p3": 1, "p8": 2},
            {"p0": 0, "p3": 1, "p8": 2},
            {f"p{i}": i for i in range(9)},
            {"p3": 1, "p5": 5, "p8": 8},
        ],
        [
            '{"p3": 1}',
            '{"p8": 1}',
            '{"p8": 1, "p3": 2}',
            '{"p0": 1, "p8": 2}',
            '{"p3": 1, "p8": 2, "p9": 3}',
        ],
    ),
    (
        "max-properties-bounds-other-keys",  # at most 3 - 1 required: 2 others
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "required": ["a"],
            "additionalProperties": {"type": "integer"},
            "maxProperties": 3,
        },
        [{"a": 1}, {"a": 1, "x": 2}, {"a": 1, "x": 2, "y": 3}],
        ['{"a": 1, "x": 2, "y": 3, "z": 4}', '{"x": 2}'],
    ),
    (
        "max-properties-of-a-map",
        {"type": "object", "maxProperties": 2},
        [{}, {"p": 1}, {"p": 1, "q": "r"}],
        ['{"p": 1, "q": 2, "r": 3}'],
    ),
    (
        "string-lengths",
        {"type": "string", "minLength": 2, "maxLength": 4},
        ["ab", "abcd", "a\nb"],
        ['"a"', '"abcde"'],
    ),
]


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_grammar_accepts_valid_and_rejects_invalid(
    schema: object,
    valid: list[object],
    invalid: list[str],
    gbnf: GrammarFactory,
) -> None:
    text = schema_to_gbnf(schema, "bounded")
    grammar = gbnf(text)  # also checks the syntax and that every rule is defined
    compact_text = schema_to_gbnf(schema)  # the default: compact JSON
    compact = gbnf(compact_text)
    checker = jsonschema.Draft202012Validator(
        cast(Any, schema), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for instance in valid:
        checker.validate(instance)  # the test data itself must be right
        for rendering in (
            json.dumps(instance, ensure_ascii=False),
            json.dumps(instance, indent=2, ensure_ascii=False),
        ):
            assert grammar.accepts(rendering), f"should accept {rendering!r}\n{text}"
        tight = json.dumps(instance, ensure_ascii=False, separators=(",", ":"))
        assert compact.accepts(tight), f"should accept {tight!r}\n{compact_text}"
    for rendering in invalid:
        assert not grammar.accepts(rendering), f"should reject {rendering!r}\n{text}"
        assert not compact.accepts(rendering), f"should reject {rendering!r}\n{compact_text}"


def test_llama_cpp_parses_every_grammar_and_generates_inside_it(
    gbnf: GrammarFactory, llama_grammar: LlamaGrammar
) -> None:
    """The real llama-server accepts each grammar of the corpus, and every answer it finishes
    under a grammar is in that grammar's language (as our recogniser reads it) and valid for
    the schema: llama.cpp and this test agree on what the grammars mean."""
    finished = 0
    for name, schema, _valid, _invalid in CASES:
        text = schema_to_gbnf(schema)
        prompt = f"Reply with JSON for this JSON Schema: {json.dumps(schema)}\nJSON:"
        generated = llama_grammar(text, prompt)
        assert generated.status == 200, f"{name}: llama.cpp refused the grammar: {generated.error}"
        if not generated.complete:
            continue  # stopped at the token limit: a prefix, not a sentence of the language
        finished += 1
        assert gbnf(text).accepts(generated.text), f"{name}: {generated.text!r}\n{text}"
        checker = jsonschema.Draft202012Validator(cast(Any, schema))
        broken = {error.validator for error in checker.iter_errors(json.loads(generated.text))}
        # Only keywords the grammar leaves to validation (schema/gbnf.py's docstring) may fail.
        assert broken <= LEFT_TO_VALIDATION, f"{name}: {generated.text!r} breaks {broken}"
    assert finished >= len(CASES) // 2, f"only {finished} of {len(CASES)} answers finished"


def test_compact_json_has_no_whitespace_between_tokens(gbnf: GrammarFactory) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {}}}}
    grammar = gbnf(schema_to_gbnf(schema))
    assert grammar.accepts('{"a":[1,{"b":" x "},[]]}')  # spaces inside strings stay
    for spaced in ('{ "a":[]}', '{"a": []}', '{"a":[1, 2]}', '{"a":[{"b" :1}]}', '{"a":[]\n}'):
        assert not grammar.accepts(spaced), spaced
    assert "ws ::=" not in schema_to_gbnf(schema)


def test_whitespace_is_bounded(gbnf: GrammarFactory) -> None:
    grammar = gbnf(schema_to_gbnf({"type": "array", "items": {"type": "integer"}}, "bounded"))
    assert grammar.accepts("[ 1,\n  2 ]")
    assert not grammar.accepts("[  1]")  # two spaces in a row
    assert not grammar.accepts("[\n\n1]")  # two newlines in a row
    assert grammar.accepts("[\n" + " " * 20 + "1]")
    assert not grammar.accepts("[\n" + " " * 21 + "1]")
    assert not grammar.accepts(" [1]")  # nothing before the value
    assert not grammar.accepts("[1] ")  # nothing after it


def test_root_is_first_and_names_are_valid() -> None:
    text = schema_to_gbnf(
        {
            "type": "object",
            "properties": {"my prop!": {"type": "array", "items": {"type": "string"}}},
        }
    )
    lines = text.splitlines()
    assert lines[0].startswith("root ::= ")
    for line in lines:
        name = line.split(" ::= ", 1)[0]
        assert name.replace("-", "").isalnum(), name


def test_empty_schema_and_true_accept_any_json(gbnf: GrammarFactory) -> None:
    for schema in ({}, True, {"description": "anything"}):
        grammar = gbnf(schema_to_gbnf(schema))
        for text in ('{"a":[1,true,null]}', "[]", '"s"', "-1.5e3", "null"):
            assert grammar.accepts(text)
        assert not grammar.accepts("{a: 1}")


def test_self_reference_at_root_is_allowed_when_not_left_recursive(gbnf: GrammarFactory) -> None:
    schema = {
        "type": "object",
        "properties": {"next": {"$ref": "#"}},
        "additionalProperties": False,
    }
    grammar = gbnf(schema_to_gbnf(schema))
    assert grammar.accepts('{"next":{"next":{}}}')
    assert not grammar.accepts('{"next":1}')


@pytest.mark.parametrize(
    ("schema", "pointer", "fragment"),
    [
        ({"type": "object1"}, "#/type", "unknown type"),
        ({"$ref": "https://example.com/s.json"}, "#/$ref", "only local references"),
        ({"$ref": "#/$defs/missing"}, "#/$ref", "points to nothing"),
        (
            # patternProperties was refused here until it became supported (issue 20)
            {"properties": {"a": {"$dynamicRef": "#x"}}},
            "#/properties/a",
            "dynamic references",
        ),
        ({"type": "string", "pattern": "(?=a)b"}, "#/pattern", "look-around"),
        ({"type": "string", "pattern": "(a)\\1"}, "#/pattern", "not supported"),
        (
            # minItems 1 added: an unsatisfiable items schema alone only forbids items (issue 20)
            {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "minItems": 3, "maxItems": 2},
            },
            "#/items",
            "cannot be met",
        ),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "#", "exclude each other"),
        (
            {
                "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
                "$ref": "#/$defs/a",
            },
            "#",
            "left recursion",
        ),
        (
            {"type": "object", "properties": {"a": False}, "required": ["a"]},
            "#/properties/a",
            "schema is false",
        ),
        (
            {"type": "object", "required": ["x"], "additionalProperties": False, "properties": {}},
            "#/required",
            "not in properties",
        ),
        (False, "#", "matches no value"),
        ("string", "#", "must be an object or a boolean"),
        ({"unevaluatedItems": False}, "#", "unevaluatedItems"),
    ],
)
def test_unsupported_constructs_name_the_place(schema: object, pointer: str, fragment: str) -> None:
    with pytest.raises(SchemaToGrammarError) as caught:
        schema_to_gbnf(schema)
    assert caught.value.pointer == pointer
    assert fragment in str(caught.value)


def test_ignored_constraints_do_not_fail() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "number", "maximum": 5, "multipleOf": 0.5},
            "l": {"type": "array", "uniqueItems": True, "contains": {"const": 1}},
            "s": {"type": "string", "format": "uri", "x-extension": 1},
        },
        "not": {"required": ["zzz"]},
        "if": {"required": ["n"]},
        "then": {"required": ["l"]},
        "minProperties": 1,
        "example": {"n": 1},
    }
    assert schema_to_gbnf(schema).startswith("root ::= ")


def test_original_example_schema(gbnf: GrammarFactory) -> None:
    grammar = gbnf(schema_to_gbnf({"type": "array", "items": PERSON}))
    assert grammar.accepts('[{"name":"John","age":30},{"name":"Jane","age":25}]')


def test_many_optional_properties_stay_small() -> None:
    properties = {f"p{i}": {"type": "integer"} for i in range(40)}
    text = schema_to_gbnf({"type": "object", "properties": properties})
    assert len(text) < 200_000
