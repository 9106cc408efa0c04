"""Ajv-style coercion (``coerceTypes: "array"``) and messages of the request validator."""

from __future__ import annotations

from typing import Any

import pytest

from mentator.api.coerce import RequestValidationError, js_number_to_string, validate
from mentator.api.requests import PROMPT_SCHEMA, parse_prompt


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "number"}, "1000", 1000),
        ({"type": "number"}, "1.5", 1.5),
        ({"type": "number"}, " 12 ", 12),
        ({"type": "number"}, "1e3", 1000),
        ({"type": "number"}, True, 1),
        ({"type": "number"}, None, 0),
        ({"type": "number"}, [5], 5),
        ({"type": "integer"}, "3", 3),
        ({"type": "integer"}, 3.0, 3),
        ({"type": "string"}, 123, "123"),
        ({"type": "string"}, 1.5, "1.5"),
        ({"type": "string"}, True, "true"),
        ({"type": "string"}, None, ""),
        ({"type": "boolean"}, "true", True),
        ({"type": "boolean"}, "false", False),
        ({"type": "boolean"}, 1, True),
        ({"type": "boolean"}, 0, False),
        ({"type": "boolean"}, None, False),
        ({"type": "array", "items": {"type": "string"}}, "*", ["*"]),
        ({"type": "array", "items": {"type": "string"}}, 7, ["7"]),
        ({"type": "array"}, None, [None]),
    ],
)
def test_coercions(schema: dict[str, Any], value: Any, expected: Any) -> None:
    result = validate(schema, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        ({"type": "number"}, "abc", "body must be number"),
        ({"type": "number"}, "", "body must be number"),
        ({"type": "integer"}, "1.5", "body must be integer"),
        ({"type": "boolean"}, "yes", "body must be boolean"),
        ({"type": "boolean"}, 2, "body must be boolean"),
        ({"type": "string"}, {"a": 1}, "body must be string"),
        ({"type": "array"}, {"a": 1}, "body must be array"),
        ({"type": "object"}, [], "body must be object"),
        ({"type": "object"}, "x", "body must be object"),
        ({"type": "number", "maximum": 2}, 2.5, "body must be <= 2"),
        ({"type": "number", "minimum": 0.5}, 0.1, "body must be >= 0.5"),
    ],
)
def test_errors(schema: dict[str, Any], value: Any, message: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        validate(schema, value)
    assert str(caught.value) == message


def test_nested_paths_name_the_item() -> None:
    schema = {
        "type": "object",
        "properties": {"list": {"type": "array", "items": {"type": "integer"}}},
    }
    with pytest.raises(RequestValidationError, match=r"^body/list/1 must be integer$"):
        validate(schema, {"list": [1, "x"]})


def test_prompt_body_is_coerced_and_extra_keys_kept() -> None:
    parsed = parse_prompt(
        {
            "model": 123,
            "message": {"user": 5, "system": False},
            "durationMsec": "1000",
            "gpulayer": "3",
            "format": {"useGrammar": "true", "jsonSchema": {"type": "string"}},
            "toolServer": "*",
            "options": {"temperature": "0.5", "seed": None},
            "unknown": {"kept": True},
        }
    )
    assert parsed.model == "123"
    assert parsed.user == "5"
    assert parsed.system == "false"
    assert parsed.duration_msec == 1000
    assert parsed.gpulayer == 3
    assert parsed.format is not None and parsed.format.use_grammar is True
    assert parsed.tool_server == ["*"]
    assert parsed.options == {"temperature": 0.5}  # null = not given
    assert parsed.body["unknown"] == {"kept": True}


def test_prompt_schema_options_cover_every_option() -> None:
    from mentator.config.options import OPTION_KEYS

    assert tuple(PROMPT_SCHEMA["properties"]["options"]["properties"]) == OPTION_KEYS


@pytest.mark.parametrize(
    ("value", "text"), [(1.0, "1"), (0.1, "0.1"), (1e21, "1e+21"), (1e-7, "1e-7"), (-3, "-3")]
)
def test_js_number_to_string(value: float, text: str) -> None:
    assert js_number_to_string(value) == text


ENCODING = {"type": "object", "properties": {"encoding_format": {"enum": ["float", "base64"]}}}


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        (ENCODING, {"encoding_format": "bas64"}, "body/encoding_format"),
        ({"type": "string", "enum": ["a", "b"]}, "c", "body"),
        ({"type": "string", "enum": ["1", "2"]}, 3, "body"),  # coerced to "3" first
        ({"enum": [1, 2]}, True, "body"),  # true is not 1
        ({"enum": [1, 2]}, "1", "body"),  # no coercion without a type
    ],
)
def test_enum_refuses_other_values_and_names_the_allowed_ones(
    schema: dict[str, Any], value: Any, message: str
) -> None:
    allowed = ", ".join(str(item) for item in schema.get("enum") or ["float", "base64"])
    with pytest.raises(RequestValidationError) as caught:
        validate(schema, value)
    assert str(caught.value) == f"{message} must be equal to one of the allowed values: {allowed}"


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        (ENCODING, {"encoding_format": "base64"}, {"encoding_format": "base64"}),
        (ENCODING, {}, {}),
        ({"type": "string", "enum": ["1", "2"]}, 2, "2"),  # coerced, then allowed
        ({"type": "number", "enum": [1, 2.5]}, "2.5", 2.5),
        ({"enum": [None, "x"]}, None, None),
        ({"enum": [{"a": [1]}]}, {"a": [1.0]}, {"a": [1.0]}),
    ],
)
def test_enum_accepts_the_allowed_values(schema: dict[str, Any], value: Any, expected: Any) -> None:
    assert validate(schema, value) == expected


def test_enum_runs_after_the_type_and_before_the_limits() -> None:
    """Ajv's order: the type (with coercion), then enum, then minimum/maximum."""
    schema = {"type": "integer", "enum": [1, 2], "minimum": 5}
    with pytest.raises(RequestValidationError, match="must be integer"):
        validate(schema, "x")
    with pytest.raises(RequestValidationError, match="allowed values: 1, 2"):
        validate(schema, 3)
