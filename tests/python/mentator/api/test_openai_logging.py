"""/v1/chat/completions writes chat-log rows (so /state counts it) and has a time limit, like
/prompt: errors always, successes when log.savePrompt is on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.context import ServiceContext
from mentator.engine.errors import EngineRequestError
from mentator.inference.completion import ChatAnswer, Completions
from mentator.inference.requests import CHAT_TIMEOUT_MS, Caller, ChatRequest
from mentator_testing.fake_engine import FakeEngine, LogReader, ServicesFactory

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture
def saving(make_services: ServicesFactory, engine: FakeEngine) -> Iterator[ServiceContext]:
    yield make_services(engine, save_prompt=True)


def _client(services: ServiceContext) -> TestClient:
    return TestClient(create_app(services), raise_server_exceptions=False)


def test_success_and_error_rows_and_stats(
    saving: ServiceContext, engine: FakeEngine, chat_log: LogReader
) -> None:
    engine.replies = ["Hi!", EngineRequestError("boom", status=500)]
    with _client(saving) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 500
        stats = client.get("/state").json()["stats1h"]
    rows = chat_log(saving)
    assert [row["code"] for row in rows] == [200, 500]
    assert stats["total"] == 2 and stats["success"] == 1 and stats["failed"] == 1


def test_streamed_completion_is_logged_with_its_text(
    saving: ServiceContext, engine: FakeEngine, chat_log: LogReader
) -> None:
    with _client(saving) as client:
        response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 200
        assert "data: [DONE]" in response.text
    rows = chat_log(saving)
    assert [row["code"] for row in rows] == [200]


def test_without_save_prompt_only_errors_are_logged(
    client: TestClient, engine: FakeEngine, services: ServiceContext, chat_log: LogReader
) -> None:
    engine.replies = ["Hi!", EngineRequestError("boom", status=500)]
    client.post("/v1/chat/completions", json=CHAT)
    client.post("/v1/chat/completions", json=CHAT)
    assert [row["code"] for row in chat_log(services)] == [500]


def test_chat_completion_has_a_time_limit(
    client: TestClient,
    engine: FakeEngine,
    services: ServiceContext,
    chat_log: LogReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Completions.chat

    async def short(self: Completions, request: ChatRequest, caller: Caller) -> ChatAnswer:
        return await original(self, dataclasses.replace(request, timeout_ms=200), caller)

    monkeypatch.setattr(Completions, "chat", short)
    engine.delay_s = 2.0
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "cancelled by timeout"
    assert [row["code"] for row in chat_log(services)] == [400]


def test_default_time_limit_is_set() -> None:
    assert ChatRequest("m", [], {}).timeout_ms == CHAT_TIMEOUT_MS > 0
