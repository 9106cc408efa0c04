"""``POST /prompt``: pipeline order, options merge, JSON answers, chat-log rules (ref. §2.4)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.options import JSON_DEFAULTS
from mentator.context import ServiceContext
from mentator.engine.errors import EngineExitedError, EngineRequestError, EngineStartError
from mentator.inference.completion import DEFAULT_SYSTEM_PROMPT
from mentator_testing.asgi import post_then_disconnect

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine, LogReader, ServicesFactory

PEOPLE = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
        "required": ["name", "age"],
    },
}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "alpha.gguf", "message": {"user": "Tell me"}, "durationMsec": 10000, **extra}


def test_text_answer(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = ["  Hello there \n"]
    response = client.post("/prompt", json=body())
    assert response.status_code == 200
    payload = response.json()
    assert payload["result"] == {"loadModelStatus": "load", "data": "Hello there"}
    assert set(payload["duration"]) == {"promptMsec", "queueMsec"}
    assert all(isinstance(value, int) for value in payload["duration"].values())
    assert "usedTools" not in payload["result"]


def test_second_request_reuses_the_model_by_any_spelling(
    client: TestClient, engine: FakeEngine
) -> None:
    client.post("/prompt", json=body())
    response = client.post("/prompt", json=body(model="ALPHA"))
    assert response.json()["result"]["loadModelStatus"] == "exists"
    assert engine.acquired == [("alpha.gguf", None, None), ("alpha.gguf", None, None)]
    assert engine.released == 2


def test_default_system_prompt_and_given_system(client: TestClient, engine: FakeEngine) -> None:
    client.post("/prompt", json=body())
    client.post("/prompt", json=body(message={"user": "u", "system": "Be brief."}))
    first, second = engine.calls
    assert first.messages == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Tell me"},
    ]
    assert second.messages[0] == {"role": "system", "content": "Be brief."}


def test_partial_options_are_merged_over_config_defaults(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    services = make_services(engine, default_options={"maxTokens": 256, "temperature": 0.3})
    with TestClient(create_app(services)) as client:
        client.post("/prompt", json=body(options={"temperature": "0.7"}))
        client.post("/prompt", json=body())
    sent, default = engine.calls[0].options, engine.calls[1].options
    assert sent["temperature"] == 0.7
    assert sent["maxTokens"] == 256  # not reset to the core default 128
    assert sent["topK"] == JSON_DEFAULTS["topK"]
    assert default["temperature"] == 0.3
    assert "seed" not in default


def test_contextsize_and_gpulayer_reach_the_engine(client: TestClient, engine: FakeEngine) -> None:
    client.post("/prompt", json=body(gpulayer="4", contextSize=2048))
    assert engine.acquired == [("alpha.gguf", 4, 2048)]


def test_unknown_model_is_400_and_stored(
    client: TestClient, services: ServiceContext, engine: FakeEngine, chat_log: LogReader
) -> None:
    response = client.post("/prompt", json=body(model="nope"))
    assert response.status_code == 400
    assert response.json()["error"] == 'Model not found: "nope"'
    assert engine.acquired == []
    rows = chat_log(services)
    assert len(rows) == 1
    assert rows[0]["code"] == 400
    assert json.loads(str(rows[0]["response"])) == response.json()
    assert json.loads(str(rows[0]["request"]))["model"] == "nope"
    assert rows[0]["answerRaw"] == ""


def test_success_not_stored_without_save_prompt(
    client: TestClient, services: ServiceContext, chat_log: LogReader, core_log: LogReader
) -> None:
    assert client.post("/prompt", json=body()).status_code == 200
    assert chat_log(services) == []
    entry = core_log(services)[-1]
    assert entry["pipe"] == "API.POST /prompt"
    assert entry["kind"] == "debug"
    assert entry["message"] == "[from testclient] /prompt"
    extra = json.loads(str(entry["extra"]))
    assert extra["loadModelStatus"] == "load"
    assert set(extra["duration"]) == {"promptMsec", "queueMsec"}


def test_success_stored_with_save_prompt(
    engine: FakeEngine, make_services: ServicesFactory, chat_log: LogReader
) -> None:
    engine.replies = ['```json\n[{"name": "Bob", "age": 30}]\n```']
    services = make_services(engine, save_prompt=True)
    with TestClient(create_app(services)) as client:
        response = client.post(
            "/prompt", json=body(format={"useGrammar": False, "jsonSchema": PEOPLE}, extra_key=1)
        )
    assert response.status_code == 200
    assert response.json()["result"]["data"] == [{"name": "Bob", "age": 30}]
    (row,) = chat_log(services)
    assert row["code"] == 200
    assert json.loads(str(row["response"])) == response.json()
    assert json.loads(str(row["request"]))["extra_key"] == 1
    assert row["answerRaw"] == '```json\n[{"name": "Bob", "age": 30}]\n```'
    stats = client.get("/state").json()["stats1h"]
    assert stats["total"] == 1 and stats["success"] == 1


def test_json_parse_error_keeps_answer_raw(
    client: TestClient,
    services: ServiceContext,
    engine: FakeEngine,
    chat_log: LogReader,
    core_log: LogReader,
) -> None:
    engine.replies = ["not json at all"]
    response = client.post("/prompt", json=body(format={"useGrammar": False, "jsonSchema": PEOPLE}))
    assert response.status_code == 400
    assert response.json()["error"].startswith("on convert response text to JSON: ")
    (row,) = chat_log(services)
    assert row["answerRaw"] == "not json at all"
    assert core_log(services)[-1]["kind"] == "error"


def test_schema_validation_error(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = ['[{"name": "Bob"}]']
    response = client.post("/prompt", json=body(format={"useGrammar": True, "jsonSchema": PEOPLE}))
    assert response.status_code == 400
    assert (
        response.json()["error"]
        == "JSON Schema validation failed: /0 must have required property 'age'"
    )
    assert engine.calls[0].grammar is not None  # the grammar went to the engine


def test_grammar_error_fails_before_queueing(
    client: TestClient, engine: FakeEngine, services: ServiceContext, chat_log: LogReader
) -> None:
    bad = {"type": "string", "pattern": "(?<=x)y"}  # lookbehind: no grammar can follow it
    response = client.post("/prompt", json=body(format={"useGrammar": True, "jsonSchema": bad}))
    assert response.status_code == 400
    assert response.json()["error"].startswith("on create llama grammar: ")
    assert response.json()["duration"]["queueMsec"] == 0
    assert engine.acquired == []
    assert chat_log(services)[0]["code"] == 400


def test_falsy_schema_skips_grammar_but_still_validates(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.replies = ['"text"']
    response = client.post("/prompt", json=body(format={"useGrammar": True, "jsonSchema": False}))
    assert engine.calls[0].grammar is None
    # `false` as a schema accepts nothing.
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON Schema validation failed:")


def test_unusable_schema_is_400_before_generation(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/prompt", json=body(format={"useGrammar": False, "jsonSchema": {"type": "object1"}})
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("on validate response: ")
    assert engine.acquired == []


def test_load_failure_is_500(client: TestClient, engine: FakeEngine) -> None:
    engine.load_error = EngineStartError("llama-server exited with code 1")
    response = client.post("/prompt", json=body())
    assert response.status_code == 500
    assert response.json()["error"] == 'on load model "alpha.gguf": llama-server exited with code 1'


def test_engine_error_is_500(
    client: TestClient, engine: FakeEngine, services: ServiceContext, chat_log: LogReader
) -> None:
    engine.replies = [EngineRequestError("context overflow", status=400)]
    response = client.post("/prompt", json=body())
    assert response.status_code == 500
    assert response.json()["error"] == "on get response text: context overflow"
    assert engine.released == 1
    assert chat_log(services)[0]["code"] == 500


def test_generation_timeout(
    client: TestClient, engine: FakeEngine, services: ServiceContext
) -> None:
    engine.delay_s = 1.0
    response = client.post("/prompt", json=body(durationMsec=50))
    assert response.status_code == 400
    assert response.json()["error"] == "cancelled by timeout"
    assert response.json()["duration"]["promptMsec"] >= 40
    assert engine.released == 1
    assert services.queue.running() == 0


def test_service_starting_is_503(make_services: ServicesFactory) -> None:
    services = make_services(None)
    with TestClient(create_app(services)) as client:
        response = client.post("/prompt", json=body())
    assert response.status_code == 503
    assert response.json()["error"].startswith("service is starting")


def test_queue_full_is_503(engine: FakeEngine, make_services: ServicesFactory) -> None:
    engine.delay_s = 0.5
    services = make_services(engine, queue_limit=0, parallel=1)
    app = create_app(services)

    async def run() -> list[Any]:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.create_task(http.post("/prompt", json=body()))
            await asyncio.sleep(0.1)
            second = await http.post("/prompt", json=body())
            return [await first, second]

    first, second = asyncio.run(run())
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.json()["error"].startswith("server busy")
    assert second.headers["retry-after"] == "1"


def test_client_disconnect_cancels_generation(
    engine: FakeEngine, make_services: ServicesFactory, chat_log: LogReader
) -> None:
    engine.delay_s = 5.0
    services = make_services(engine)
    sent = asyncio.run(post_then_disconnect(create_app(services), "/prompt", body()))
    assert engine.released == 1
    assert services.queue.running() == 0
    (row,) = chat_log(services)
    assert row["code"] == 499
    assert sent[0]["status"] == 499


def test_queue_wait_counts_against_duration(
    engine: FakeEngine, make_services: ServicesFactory
) -> None:
    engine.delay_s = 0.6
    services = make_services(engine, parallel=1)
    app = create_app(services)

    async def run() -> list[Any]:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.create_task(http.post("/prompt", json=body()))
            await asyncio.sleep(0.1)
            second = await http.post("/prompt", json=body(durationMsec=150))
            return [await first, second]

    first, second = asyncio.run(run())
    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "cancelled by timeout"
    assert len(engine.acquired) == 1  # the second never reached the engine
    assert services.queue.waiting() == 0


def test_prompt_grammar_is_the_check_gbnf_grammar(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = ['[{"name": "Ann", "age": 3}]']
    assert (
        client.post(
            "/prompt", json=body(format={"useGrammar": True, "jsonSchema": PEOPLE})
        ).status_code
        == 200
    )
    checked = client.post("/check/gbnf", json={"schema": PEOPLE}).json()
    assert engine.calls[0].grammar == checked["grammar"]


def test_request_the_engine_never_saw_is_retried_once_on_a_fresh_engine(
    client: TestClient, engine: FakeEngine
) -> None:
    refused = EngineExitedError(-9, "killed", unsent=True)
    engine.replies = [refused, "fine"]
    response = client.post("/prompt", json=body())
    assert response.status_code == 200, response.text
    assert response.json()["result"]["data"] == "fine"
    assert len(engine.acquired) == 2
    assert engine.released == 2


def test_request_the_engine_had_started_gets_the_error(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.replies = [EngineExitedError(-9, "killed"), "never"]
    response = client.post("/prompt", json=body())
    assert response.status_code == 500
    assert "exited unexpectedly (code -9)" in response.json()["error"]
    assert len(engine.acquired) == 1


def test_second_refusal_is_not_retried_again(client: TestClient, engine: FakeEngine) -> None:
    engine.replies = [EngineExitedError(-9, "a", unsent=True)] * 3
    response = client.post("/prompt", json=body())
    assert response.status_code == 500
    assert len(engine.acquired) == 2


def test_trim_whitespace_false_keeps_the_trailing_whitespace(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.replies = ["  text \n", "  text \n"]
    kept = client.post("/prompt", json=body(options={"trimWhitespace": False}))
    trimmed = client.post("/prompt", json=body(options={"trimWhitespace": True}))
    assert kept.json()["result"]["data"] == "text \n"
    assert trimmed.json()["result"]["data"] == "text"
