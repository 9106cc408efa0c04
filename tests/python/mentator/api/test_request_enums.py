"""A field with a fixed set of values answers 400 naming them when given another one (issue 19:
``encoding_format: "bas64"`` silently returned floats; ``response_format.type: "foo"`` was told
about a missing ``json_schema``)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mentator_testing.fake_engine import FakeEngine

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"function": {"name": "add", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/embeddings",
            {"model": "alpha", "input": "abcd", "encoding_format": "bas64"},
            "body/encoding_format must be equal to one of the allowed values: float, base64",
        ),
        (
            "/v1/chat/completions",
            {"model": "alpha", "messages": MESSAGES, "response_format": {"type": "foo"}},
            "body/response_format/type must be equal to one of the allowed values: "
            "text, json_object, json_schema",
        ),
        (
            "/v1/chat/completions",
            {"model": "alpha", "messages": MESSAGES, "tools": [{"type": "foo", **TOOL}]},
            "body/tools/0/type must be equal to one of the allowed values: function",
        ),
    ],
)
def test_a_value_outside_the_allowed_ones_is_a_400_naming_them(
    client: TestClient, engine: FakeEngine, path: str, body: dict[str, Any], message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] == message
    assert error["type"] == "invalid_request_error"
    assert engine.calls == []  # refused before any engine work


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "alpha", "input": "abcd", "encoding_format": "float"}),
        ("/v1/embeddings", {"model": "alpha", "input": "abcd", "encoding_format": "base64"}),
        ("/v1/chat/completions", {"model": "alpha", "messages": MESSAGES}),
        (
            "/v1/chat/completions",
            {"model": "alpha", "messages": MESSAGES, "response_format": {"type": "text"}},
        ),
        (
            "/v1/chat/completions",
            {"model": "alpha", "messages": MESSAGES, "response_format": {"type": "json_object"}},
        ),
        (
            "/v1/chat/completions",
            {"model": "alpha", "messages": MESSAGES, "tools": [{"type": "function", **TOOL}]},
        ),
    ],
)
def test_the_allowed_values_are_accepted(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
