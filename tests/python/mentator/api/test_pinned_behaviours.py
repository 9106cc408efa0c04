"""Behaviours that were once broken on purpose without any test noticing (issue 15, item 12):
the reference's default values, an empty system prompt, the request deadline over queue wait +
generation, storage failures reaching /health, the queue size, a failing /v1 stream, and a
client that goes away."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.options import JSON_DEFAULTS
from mentator.engine.errors import EngineRequestError
from mentator_testing.asgi import post_then_disconnect

if TYPE_CHECKING:
    from mentator.context import ServiceContext
    from mentator_testing.fake_engine import FakeEngine, LogReader, ServicesFactory

# Reference §2.3 ("JSON" column) and §1.3's generated docker file, written out rather than
# imported so that a changed default fails here.
REFERENCE_JSON_DEFAULTS = {
    "temperature": 0,
    "topP": 0.1,
    "topK": 10,
    "minP": 0,
    "maxTokens": 4096,
    "repeatPenalty": 1,
    "repeatPenaltyNum": 0,
    "presencePenalty": 0,
    "frequencyPenalty": 0,
    "mirostat": 0,
    "mirostatTau": 5,
    "mirostatEta": 0.1,
    "penalizeNewline": False,
    "stopSequences": [],
    "trimWhitespace": True,
    "tokenBias": {},
    "evaluationPriority": 5,
    "contextShiftSize": 0,
    "disableContextShift": False,
}
# Reference §2.4, message.system: node-llama-cpp's built-in default system prompt.
REFERENCE_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of "
    "answering something incorrectly. If you don't know the answer to a question, don't share "
    "false information."
)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "alpha.gguf", "message": {"user": "Tell me"}, "durationMsec": 10000, **extra}


def test_default_options_are_the_reference_values(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    assert dict(JSON_DEFAULTS) == REFERENCE_JSON_DEFAULTS
    services = make_services(engine, default_options={})
    with TestClient(create_app(services)) as client:
        assert client.post("/prompt", json=body()).status_code == 200
    (call,) = engine.calls
    # What reaches the engine port: every default, none renamed or dropped.
    for key, value in REFERENCE_JSON_DEFAULTS.items():
        assert call.options[key] == value, key


def test_default_system_prompt_is_the_reference_text(
    client: TestClient, engine: FakeEngine
) -> None:
    assert client.post("/prompt", json=body()).status_code == 200
    assert engine.calls[0].messages[0] == {"role": "system", "content": REFERENCE_SYSTEM_PROMPT}


def test_empty_system_is_kept_empty(client: TestClient, engine: FakeEngine) -> None:
    reply = client.post("/prompt", json=body(message={"user": "u", "system": ""}))
    assert reply.status_code == 200
    assert engine.calls[0].messages == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "u"},
    ]


def test_deadline_covers_queue_wait_plus_generation(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    """One slot; the first request holds it 0.6 s. The second has 1 s in all: 0.5 s waiting
    plus 0.6 s generating is over it, though each part alone is under it."""
    engine.delay_s = 0.6
    services = make_services(engine, parallel=1)
    app = create_app(services)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.create_task(http.post("/prompt", json=body()))
            await asyncio.sleep(0.1)
            second = await http.post("/prompt", json=body(durationMsec=1000))
            return [await first, second]

    first, second = asyncio.run(run())
    assert first.status_code == 200
    assert second.status_code == 400, second.text
    assert second.json()["error"] == "cancelled by timeout"
    assert len(engine.acquired) == 2  # it did reach the engine: the wait alone was not too long


def _break_table(services: ServiceContext, table: str) -> None:
    assert services.database is not None
    with services.database.session("test") as conn:
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")


def test_chat_log_write_failure_makes_health_degraded(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    services = make_services(engine, save_prompt=True)
    with TestClient(create_app(services)) as client:
        assert client.get("/health").json()["status"] == "ready"
        _break_table(services, "promptExtra")
        # The answer is still given: the log is ours to lose, not the caller's answer.
        assert client.post("/prompt", json=body()).status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert any("save prompt" in reason for reason in health["reasons"]), health


def test_stats_read_failure_makes_health_degraded(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    services = make_services(engine, save_prompt=True)
    with TestClient(create_app(services)) as client:
        _break_table(services, "prompt")
        state = client.get("/state")
        assert state.status_code == 200
        assert state.json()["stats1h"]["total"] == 0
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert any("no such table" in reason for reason in health["reasons"]), health


def test_state_queue_size_counts_waiting_requests(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    """One slot, three requests: one runs, two wait; queueSize says 2."""
    engine.delay_s = 0.8
    services = make_services(engine, parallel=1)
    app = create_app(services)

    async def run() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            tasks = [asyncio.create_task(http.post("/prompt", json=body())) for _ in range(3)]
            await asyncio.sleep(0.3)
            busy = (await http.get("/state")).json()["queueSize"]
            await asyncio.gather(*tasks)
            idle = (await http.get("/state")).json()["queueSize"]
            return busy, idle

    assert asyncio.run(run()) == (2, 0)


def test_engine_error_mid_stream_sends_an_error_event(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.stream_pieces = ["Hel", "lo"]
    engine.stream_error = EngineRequestError("engine process exited unexpectedly (code -9)")
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "alpha.gguf",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
    ) as response:
        assert response.status_code == 200  # headers were sent before the engine failed
        events = [
            line.removeprefix("data: ")
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    # The error event follows the pieces; no chunk claims a normal finish.
    texts = [json.loads(event) for event in events if event != "[DONE]"]
    pieces = [
        chunk["choices"][0]["delta"].get("content") for chunk in texts if chunk.get("choices")
    ]
    assert "Hel" in pieces and "lo" in pieces
    finishes = [c["choices"][0].get("finish_reason") for c in texts if c.get("choices")]
    assert "stop" not in finishes
    error = texts[-1]["error"]
    assert "exited unexpectedly" in error["message"]
    assert error["type"]


def test_client_disconnect_cancels_openai_chat(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    engine.delay_s = 5.0
    services = make_services(engine)
    sent = asyncio.run(
        post_then_disconnect(
            create_app(services),
            "/v1/chat/completions",
            {"model": "alpha.gguf", "messages": [{"role": "user", "content": "hi"}]},
        )
    )
    assert engine.released == 1
    assert services.queue.running() == 0
    assert sent[0]["status"] == 499


def test_client_disconnect_cancels_embedding(
    engine: FakeEngine, make_services: ServicesFactory, chat_log: LogReader
) -> None:
    engine.delay_s = 5.0
    services = make_services(engine)
    sent = asyncio.run(
        post_then_disconnect(
            create_app(services), "/embedding", {"model": "alpha.gguf", "message": "hello"}
        )
    )
    assert [call.kind for call in engine.calls] == ["embed"]  # it was running when cut off
    assert engine.released == 1
    assert services.queue.running() == 0
    assert sent[0]["status"] == 499


_ = sqlite3  # the broken-table tests rely on SQLite's own "no such table" wording
