"""``cancelOnDisconnect: false``: whole answers asked from llama-server in one piece (real engine).

The service then reads one JSON answer instead of a stream of events; the text, the finish
reason and the engine's token count must be what the streamed reading of the same greedy
request gives (a stream is always read as events, whatever the switch says).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mentator_testing.service_process import running_service

BODY = {
    "messages": [{"role": "user", "content": "Name three colours."}],
    "max_tokens": 24,
    "temperature": 0,
    "top_k": 1,
}


@pytest.fixture(scope="module")
def whole_client(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    with (
        running_service(
            tmp_path_factory.mktemp("whole"),
            engine_dir=engine_dir,
            model=test_model,
            parallel=1,
            extra={"cancelOnDisconnect": False},
        ) as svc,
        httpx.Client(base_url=svc.base_url, timeout=300) as http,
    ):
        yield http


def _streamed(http: httpx.Client, body: dict[str, object]) -> tuple[str, str | None]:
    text: list[str] = []
    finish: str | None = None
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if not line.startswith("data:") or "[DONE]" in line:
                continue
            for choice in json.loads(line[5:]).get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
    return "".join(text), finish


def test_a_one_piece_answer_equals_the_streamed_one(
    whole_client: httpx.Client, model_name: str
) -> None:
    body = {**BODY, "model": model_name}
    whole = whole_client.post("/v1/chat/completions", json=body)
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    text, finish = _streamed(whole_client, body)
    assert answer["choices"][0]["message"]["content"] == text != ""
    assert answer["choices"][0]["finish_reason"] == finish == "length"
    assert answer["usage"]["completion_tokens"] == BODY["max_tokens"]


def test_prompt_with_a_schema_answers_in_one_piece(
    whole_client: httpx.Client, model_name: str
) -> None:
    reply = whole_client.post(
        "/prompt",
        json={
            "model": model_name,
            "durationMsec": 300_000,
            "message": {"user": "Bob is 42. Give his name and age as JSON."},
            "options": {"maxTokens": 64, "temperature": 0},
            "format": {
                "useGrammar": True,
                "jsonSchema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name", "age"],
                },
            },
        },
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["result"]["data"]
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
