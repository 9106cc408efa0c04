"""`/prompt` with `useGrammar` + `jsonSchema` on a real model: every answer parses and validates.

Strings and arrays carry maxLength / maxItems so that a 135M model cannot ramble past maxTokens
(a truncated answer would be a 400 parse error, which is what the original does too).
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

NAME = {"type": "string", "minLength": 1, "maxLength": 24}

SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    "array-of-strings": (
        "List three colours.",
        {
            "type": "array",
            "items": {"type": "string", "maxLength": 16},
            "minItems": 1,
            "maxItems": 3,
        },
    ),
    "object-name-age": (
        "Bob is 42 years old. Give his name and age.",
        {
            "type": "object",
            "properties": {"name": NAME, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    ),
    "enum-property": (
        "What colour is the sky on a clear day?",
        {
            "type": "object",
            "properties": {"colour": {"enum": ["red", "green", "blue"]}},
            "required": ["colour"],
        },
    ),
    "nested-object": (
        "Alice lives in Paris, postcode 75001.",
        {
            "type": "object",
            "properties": {
                "person": {
                    "type": "object",
                    "properties": {
                        "name": NAME,
                        "address": {
                            "type": "object",
                            "properties": {
                                "city": NAME,
                                "zip": {"type": "string", "maxLength": 10},
                            },
                            "required": ["city", "zip"],
                        },
                    },
                    "required": ["name", "address"],
                }
            },
            "required": ["person"],
        },
    ),
    "array-of-objects": (
        "Bob is 42, Diana is 37.",
        {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {"name": NAME, "age": {"type": "number"}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
        },
    ),
    "integers": (
        "Give two small whole numbers.",
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
    ),
    "boolean-and-number": (
        "Is Paris the capital of France? Also give a temperature in Celsius.",
        {
            "type": "object",
            "properties": {"isCapital": {"type": "boolean"}, "temperature": {"type": "number"}},
            "required": ["isCapital", "temperature"],
        },
    ),
    "root-enum": ("Answer yes or no: is water wet?", {"enum": ["yes", "no"]}),
    "any-of": (
        "Give either a word or a number.",
        {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 12}]},
    ),
    "ref-defs": (
        "Name two cities.",
        {
            "$defs": {
                "city": {"type": "object", "properties": {"name": NAME}, "required": ["name"]}
            },
            "type": "object",
            "properties": {
                "cities": {"type": "array", "items": {"$ref": "#/$defs/city"}, "maxItems": 2}
            },
            "required": ["cities"],
        },
    ),
    "const-and-nullable": (
        "Report status ok with no error.",
        {
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "error": {"type": ["string", "null"], "maxLength": 20},
            },
            "required": ["status", "error"],
        },
    ),
    "optional-properties": (
        "Describe a cat briefly.",
        {
            "type": "object",
            "properties": {"animal": NAME, "legs": {"type": "integer"}, "colour": NAME},
            "required": ["animal"],
        },
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMAS))
def test_schema_answer_parses_and_validates(
    client: httpx.Client, model_name: str, case: str
) -> None:
    user, schema = SCHEMAS[case]
    response = client.post(
        "/prompt",
        json={
            "model": model_name,
            "durationMsec": 120_000,
            "message": {"system": "Answer in JSON.", "user": user},
            "options": {"maxTokens": 200, "temperature": 0},
            "format": {"useGrammar": True, "jsonSchema": schema},
        },
    )
    body = response.json()
    assert response.status_code == 200, body
    data = body["result"]["data"]
    jsonschema.validate(data, schema)
    assert body["result"]["loadModelStatus"] in {"load", "exists"}
    assert set(body["duration"]) == {"promptMsec", "queueMsec"}
