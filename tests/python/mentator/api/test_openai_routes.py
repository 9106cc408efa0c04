"""OpenAI-compatible ``/v1`` routes."""

from __future__ import annotations

import base64
import json
import struct
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient

from mentator.context import ServiceContext
from mentator.engine.errors import EngineRequestError

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine


def test_models(client: TestClient) -> None:
    answer = client.get("/v1/models").json()
    assert answer["object"] == "list"
    assert [model["id"] for model in answer["data"]] == ["alpha.gguf", "beta.gguf"]
    assert answer["data"][0]["object"] == "model"


def test_chat_completion(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = ["Hi!"]
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "alpha",
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            ],
            "temperature": 0.2,
            "max_tokens": 50,
            "stop": "END",
            "seed": 7,
        },
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "alpha.gguf"
    assert answer["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
    ]
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    call = engine.calls[0]
    assert call.messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hello"},
    ]
    assert call.options["temperature"] == 0.2
    assert call.options["maxTokens"] == 50
    assert call.options["stopSequences"] == ["END"]
    assert call.options["seed"] == 7
    assert call.grammar is None


def test_response_format_becomes_a_grammar(client: TestClient, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    client.post(
        "/v1/chat/completions",
        json={
            "model": "alpha",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        },
    )
    client.post(
        "/v1/chat/completions",
        json={
            "model": "alpha",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
    )
    assert engine.calls[0].grammar and "root" in engine.calls[0].grammar
    assert engine.calls[1].grammar and engine.calls[1].grammar != engine.calls[0].grammar


def test_streaming(client: TestClient, engine: FakeEngine, services: ServiceContext) -> None:
    engine.stream_pieces = ["Hel", "lo"]
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "alpha",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(
        chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]
    )
    assert text == "Hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert engine.released == 1
    assert services.queue.running() == 0


def test_errors_use_openai_shape(client: TestClient, engine: FakeEngine) -> None:
    missing = client.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {
            "message": 'Model not found: "nope"',
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    invalid = client.post("/v1/chat/completions", json={"model": "alpha"})
    assert invalid.status_code == 400
    assert invalid.json()["error"]["message"] == "body must have required property 'messages'"
    unknown = client.get("/v1/nothing")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Route GET:/v1/nothing not found"
    engine.replies = [EngineRequestError("boom")]
    failed = client.post(
        "/v1/chat/completions",
        json={"model": "alpha", "messages": [{"role": "user", "content": "x"}]},
    )
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "server_error"


def test_embeddings(client: TestClient) -> None:
    answer = client.post("/v1/embeddings", json={"model": "alpha", "input": ["ab", "abc"]}).json()
    assert answer["object"] == "list"
    assert answer["model"] == "alpha.gguf"
    assert [item["embedding"] for item in answer["data"]] == [[0.5, -0.25, 2.0], [0.5, -0.25, 3.0]]
    assert [item["index"] for item in answer["data"]] == [0, 1]
    single = client.post(
        "/v1/embeddings", json={"model": "alpha", "input": "abcd", "encoding_format": "base64"}
    ).json()
    raw = base64.b64decode(single["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (0.5, -0.25, 4.0)
    bad = client.post("/v1/embeddings", json={"model": "alpha", "input": {"x": 1}})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "body/input must be a string or an array of strings"


def test_text_completion(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = [" Paris."]
    answer = client.post(
        "/v1/completions",
        json={"model": "alpha", "prompt": ["The capital is"], "max_tokens": 5, "stop": "\n"},
    ).json()
    assert answer["object"] == "text_completion"
    assert answer["choices"] == [
        {"text": " Paris.", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    # The prompt reaches the engine as raw text (the fake marks a text completion "raw").
    call = engine.calls[-1]
    assert call.messages == [{"role": "raw", "content": "The capital is"}]
    assert call.options["maxTokens"] == 5 and call.options["stopSequences"] == ["\n"]


def test_text_completion_stream_and_errors(client: TestClient, engine: FakeEngine) -> None:
    engine.stream_pieces = ["A", "B"]
    with client.stream(
        "POST", "/v1/completions", json={"model": "alpha", "prompt": "x", "stream": True}
    ) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "AB"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert engine.calls[-1].kind == "stream"
    for body, word in (
        ({"model": "alpha", "prompt": ["a", "b"]}, "one prompt per request"),
        ({"model": "alpha", "prompt": "a", "echo": True}, "echo"),
        ({"model": "nothing", "prompt": "a"}, 'Model not found: "nothing"'),
    ):
        bad = client.post("/v1/completions", json=body)
        assert bad.status_code in (400, 404), bad.text
        assert word in bad.json()["error"]["message"]


_ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def test_tools_auto_text_or_call(client: TestClient, engine: FakeEngine) -> None:
    ask = {
        "model": "alpha",
        "messages": [{"role": "user", "content": "2+3?"}],
        "tools": [_ADD_TOOL],
    }
    engine.replies = ["Five."]
    text = client.post("/v1/chat/completions", json=ask).json()["choices"][0]
    assert text["message"]["content"] == "Five." and text["finish_reason"] == "stop"
    grammar = engine.calls[-1].grammar or ""
    assert grammar.startswith("root ::= tool-call | free-text")
    assert "You can call these functions" in engine.calls[-1].messages[0]["content"]
    engine.replies = ['[{"name": "add", "arguments": {"a": 2, "b": 3}}]']
    call = client.post("/v1/chat/completions", json=ask).json()["choices"][0]
    assert call["finish_reason"] == "tool_calls" and call["message"]["content"] is None
    [made] = call["message"]["tool_calls"]
    assert made["type"] == "function" and made["id"].startswith("call_")
    assert made["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}


def test_tools_stream_a_call(client: TestClient, engine: FakeEngine) -> None:
    engine.stream_pieces = ['{"name": "add", ', '"arguments": {"a": 1, "b": 2}}']
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "alpha",
            "messages": [{"role": "user", "content": "1+2?"}],
            "tools": [_ADD_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "add"}},
            "stream": True,
        },
    ) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line)["choices"][0] for line in lines[:-1]]
    calls = [c["delta"]["tool_calls"] for c in chunks if "tool_calls" in c["delta"]]
    assert len(calls) == 1 and calls[0][0]["index"] == 0
    assert json.loads(calls[0][0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert chunks[-1]["finish_reason"] == "tool_calls"
    assert not any(c["delta"].get("content") for c in chunks)


def test_tool_request_errors(client: TestClient, engine: FakeEngine) -> None:
    base = {"model": "alpha", "messages": [{"role": "user", "content": "x"}]}
    for extra, words in (
        ({"tool_choice": "required"}, "body/tool_choice needs body/tools"),
        (
            {"tools": [_ADD_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "'x' is not one of body/tools",
        ),
        ({"tools": [_ADD_TOOL, _ADD_TOOL]}, "offered twice"),
        ({"tools": [_ADD_TOOL], "tool_choice": "sometimes"}, "body/tool_choice must be"),
        (
            {"tools": [_ADD_TOOL], "response_format": {"type": "json_object"}},
            "cannot be combined with tools",
        ),
    ):
        bad = client.post("/v1/chat/completions", json={**base, **extra})
        assert bad.status_code == 400, (extra, bad.text)
        assert words in bad.json()["error"]["message"]
