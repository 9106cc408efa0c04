"""The OpenAI-compatible routes on a real engine."""

from __future__ import annotations

import json

import httpx
import jsonschema


def test_chat_completion_with_json_schema(client: httpx.Client, model_name: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 60,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "c", "schema": schema},
            },
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), schema)
    assert body["usage"]["completion_tokens"] > 0


def test_chat_completion_stream(client: httpx.Client, model_name: str) -> None:
    chunks = []
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "Count to five."}],
            "max_tokens": 20,
            "stream": True,
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[len("data: ") :])
    assert chunks[-1] == "[DONE]"
    text = "".join(json.loads(c)["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text.strip()


def test_models_and_embeddings(client: httpx.Client, model_name: str) -> None:
    models = client.get("/v1/models").json()
    assert model_name in [m["id"] for m in models["data"]]
    emb = client.post("/v1/embeddings", json={"model": model_name, "input": ["a", "b"]}).json()
    assert [d["index"] for d in emb["data"]] == [0, 1]
    assert len(emb["data"][0]["embedding"]) == 576
