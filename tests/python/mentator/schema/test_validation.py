from __future__ import annotations

from typing import Any

import pytest

from mentator.schema.validation import (
    FAILED_PREFIX,
    MAX_DEPTH,
    SchemaProblemError,
    check_schema,
    extract_json_text,
    parse_json_answer,
    validate_response,
)

PEOPLE = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
}


def test_valid_instance_gives_none() -> None:
    assert validate_response(PEOPLE, [{"name": "a", "age": 3}]) is None


def test_missing_required_uses_original_wording_and_pointer() -> None:
    assert (
        validate_response(PEOPLE, [{"name": "a"}])
        == "JSON Schema validation failed: /0 must have required property 'age'"
    )


def test_root_error_keeps_two_spaces() -> None:
    assert validate_response(PEOPLE, {"x": 1}) == "JSON Schema validation failed:  must be array"


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        ({"type": "integer", "maximum": 5}, 7, " must be <= 5"),
        ({"type": "integer", "exclusiveMinimum": 0}, 0, " must be > 0"),
        ({"enum": ["a", "b"]}, "c", " must be equal to one of the allowed values"),
        ({"const": 1}, 2, " must be equal to constant"),
        ({"type": "string", "minLength": 2}, "a", " must NOT have fewer than 2 characters"),
        ({"type": "array", "maxItems": 1}, [1, 2], " must NOT have more than 1 items"),
        ({"type": "string", "pattern": "^a"}, "b", ' must match pattern "^a"'),
        ({"type": ["string", "null"]}, 1, " must be string,null"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "object", "additionalProperties": False}},
            },
            {"a": {"z": 1}},
            "/a must NOT have additional properties",
        ),
        ({"properties": {"a/b": {"type": "string"}}}, {"a/b": 1}, "/a~1b must be string"),
    ],
)
def test_ajv_style_messages(schema: object, instance: object, expected: str) -> None:
    assert validate_response(schema, instance) == "JSON Schema validation failed: " + expected


def test_formats_are_checked() -> None:
    schema = {"type": "string", "format": "email"}
    assert validate_response(schema, "user@example.org") is None
    assert (
        validate_response(schema, "nope")
        == 'JSON Schema validation failed:  must match format "email"'
    )
    assert validate_response({"format": "date"}, "2024-13-45") is not None
    assert validate_response({"format": "uuid"}, "12345678-1234-1234-1234-123456789abc") is None


def test_unknown_keywords_and_unknown_formats_are_ignored() -> None:
    schema = {
        "type": "object",
        "example": {"a": 1},
        "x-custom": True,
        "properties": {"u": {"format": "made-up"}},
    }
    assert validate_response(schema, {"u": "anything"}) is None


def test_draft_2020_12_and_draft_07_are_both_understood() -> None:
    tuple_2020 = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "prefixItems": [{"type": "string"}],
        "items": False,
    }
    assert validate_response(tuple_2020, ["a"]) is None
    assert validate_response(tuple_2020, ["a", 1]) is not None
    tuple_07 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "items": [{"type": "string"}],
        "additionalItems": False,
    }
    assert validate_response(tuple_07, ["a"]) is None
    assert validate_response(tuple_07, ["a", "b"]) is not None


def test_reused_id_is_harmless() -> None:
    schema = {"$id": "https://example.test/person", "type": "object", "required": ["a"]}
    for _ in range(3):
        assert validate_response(schema, {"a": 1}) is None
    other = {"$id": "https://example.test/person", "type": "string"}
    assert validate_response(other, "s") is None


def test_local_refs_resolve() -> None:
    schema = {"$defs": {"n": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/n"}}
    assert validate_response(schema, [1, 2]) is None
    assert (
        validate_response(schema, [1, "x"]) == "JSON Schema validation failed: /1 must be integer"
    )


def test_unusable_schemas_raise_schema_problem() -> None:
    with pytest.raises(SchemaProblemError, match="schema is invalid"):
        validate_response({"type": "object1"}, {})
    with pytest.raises(SchemaProblemError, match="object or boolean"):
        validate_response("string schema", {})
    with pytest.raises(SchemaProblemError, match=r"\$ref"):
        validate_response({"$ref": "https://example.invalid/remote.json"}, {})


def test_boolean_schemas() -> None:
    assert validate_response(True, {"any": 1}) is None
    assert validate_response(False, 1) is not None


def test_check_schema_messages() -> None:
    assert check_schema(PEOPLE) == ""
    assert check_schema(True) == ""
    assert check_schema({"type": "object1"}).startswith(
        "JSON Schema validation failed: schema is invalid: /type "
    )
    assert (
        check_schema(None)
        == "JSON Schema validation failed: schema must be object or boolean, got null"
    )
    assert check_schema("abc") == "JSON Schema validation failed: schema must be object or boolean"
    assert check_schema({"pattern": "(unclosed"}).startswith(
        "JSON Schema validation failed: schema is invalid"
    )
    assert check_schema({"example": 1, "format": "email"}) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a":1}', '{"a":1}'),
        ('Here:\n```json\n{"a": 1}\n```\nbye', '{"a": 1}'),
        ('```\n[1,2]\n``` and ```json\n{"b":2}\n```', "[1,2]"),
        ("``````", "``````"),
        ('text ```json {"x": true}```', '{"x": true}'),
    ],
)
def test_extract_json_text(text: str, expected: str) -> None:
    assert extract_json_text(text) == expected


def test_parse_json_answer() -> None:
    assert parse_json_answer('```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        parse_json_answer("NaN")
    with pytest.raises(ValueError):
        parse_json_answer("not json")


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def nested_instance(levels: int, leaf: object) -> object:
    for _ in range(levels):
        leaf = {"a": leaf}
    return leaf


def test_schemas_as_deep_as_the_body_reader_allows_are_checked_and_used() -> None:
    # 120 levels = 241 JSON levels (the HTTP body reader allows 256); Python's default recursion
    # limit made jsonschema fail from about 100 JSON levels on.
    schema = nested_schema(120)
    assert check_schema(schema) == ""
    assert validate_response(schema, nested_instance(120, 1)) is None
    assert validate_response(schema, nested_instance(120, "1")) == (
        f"{FAILED_PREFIX}{'/a' * 120} must be integer"
    )


def test_schema_deeper_than_the_limit_is_refused_with_the_limit() -> None:
    message = f"the schema is nested 601 levels deep; at most {MAX_DEPTH} are supported"
    assert check_schema(nested_schema(300)) == FAILED_PREFIX + message
    with pytest.raises(SchemaProblemError, match=message):
        validate_response(nested_schema(300), 1)


RECURSIVE_LIST = {
    "$defs": {"l": {"type": "array", "items": {"$ref": "#/$defs/l"}}},
    "$ref": "#/$defs/l",
}


def test_deep_answers_are_validated_up_to_the_limit_then_refused() -> None:
    deep = parse_json_answer("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert validate_response(RECURSIVE_LIST, deep) is None
    deeper = parse_json_answer("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert validate_response(RECURSIVE_LIST, deeper) == (
        f"{FAILED_PREFIX} the answer is nested {MAX_DEPTH + 1} levels deep; "
        f"at most {MAX_DEPTH} are supported"
    )


def test_answer_too_deep_to_parse_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json_answer("[" * 100_000 + "]" * 100_000)


def test_schema_that_contains_itself_is_a_schema_problem() -> None:
    endless = {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}
    with pytest.raises(SchemaProblemError, match="refers to itself without end"):
        validate_response(endless, 1)


@pytest.mark.parametrize(
    ("fmt", "wrong"),
    [("date-time", "2024-01-01 noon"), ("time", "08:30:06 PST"), ("date", "2024-13-01")],
)
def test_date_and_time_formats_are_checked(fmt: str, wrong: str) -> None:
    # jsonschema checks date-time and time only when rfc3339-validator is importable: the BUILD
    # file must hand it to whatever runs validation (the PEX, these tests).
    schema = {"type": "string", "format": fmt}
    assert validate_response(schema, wrong) == f'{FAILED_PREFIX} must match format "{fmt}"'
