"""Residency on the wire (issue 21): ``/state`` ``loadedModels``, ``/v1/models`` ``loaded``,
``POST /models/load|unload``, ``keepAlive`` on request bodies, the 503 of a model that does not
fit — over the fake engine (the residency rules themselves: tests/python/mentator/engine/)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.context import ServiceContext
from mentator.engine.errors import ModelTooLargeError
from mentator.engine.ports import ResidentModel

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine

PROMPT = {"model": "alpha", "message": {"user": "hi"}, "durationMsec": 60000}


def resident(name: str, **changes: object) -> ResidentModel:
    fields: dict[str, object] = {
        "name": name,
        "backend": "cpu",
        "gpulayer": None,
        "context_size": 2048,
        "size_mb": 95,
        "estimated_mb": 205,
        "estimated_vram_mb": 0,
        "loaded_at": 1_700_000_000_000,
        "last_used_at": 1_700_000_060_000,
        "expires_at": 1_700_000_360_000,
        "pinned": False,
        "in_flight": 1,
        "alive": True,
    }
    fields.update(changes)
    return ResidentModel(**fields)  # type: ignore[arg-type]


def test_state_lists_every_resident_model(client: TestClient, engine: FakeEngine) -> None:
    engine.residents = [resident("beta.gguf"), resident("alpha.gguf", pinned=True, expires_at=None)]
    state = client.get("/state").json()
    assert state["maxLoadedModels"] == 3
    assert state["loadedModels"] == [
        {
            "name": "beta.gguf",
            "backend": "cpu",
            "gpulayer": None,
            "contextSize": 2048,
            "sizeMb": 95,
            "estimatedMemoryMb": 205,
            "estimatedVramMbPerGpu": 0,
            "loadedAt": 1_700_000_000_000,
            "lastUsedAt": 1_700_000_060_000,
            "expiresAt": 1_700_000_360_000,
            "pinned": False,
            "inFlight": 1,
            "alive": True,
        },
        {
            "name": "alpha.gguf",
            "backend": "cpu",
            "gpulayer": None,
            "contextSize": 2048,
            "sizeMb": 95,
            "estimatedMemoryMb": 205,
            "estimatedVramMbPerGpu": 0,
            "loadedAt": 1_700_000_000_000,
            "lastUsedAt": 1_700_000_060_000,
            "expiresAt": None,
            "pinned": True,
            "inFlight": 1,
            "alive": True,
        },
    ]
    assert client.get("/models/loaded").json()["loadedModels"] == state["loadedModels"]


def test_v1_models_marks_the_loaded_ones(client: TestClient, engine: FakeEngine) -> None:
    engine.residents = [resident("beta.gguf")]
    listed = {entry["id"]: entry["loaded"] for entry in client.get("/v1/models").json()["data"]}
    assert listed == {"alpha.gguf": False, "beta.gguf": True}


def test_keep_alive_reaches_the_engine_in_seconds(client: TestClient, engine: FakeEngine) -> None:
    for value, seconds in [("5m", 300.0), (90, 90.0), ("0", 0.0), (-1, -1.0), ("1h30m", 5400.0)]:
        answer = client.post("/prompt", json={**PROMPT, "keepAlive": value})
        assert answer.status_code == 200, answer.text
        assert engine.keep_alives[-1] == seconds
    client.post("/prompt", json=PROMPT)
    assert engine.keep_alives[-1] is None  # the config's keepAliveSec
    chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "keep_alive": "2m"}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert engine.keep_alives[-1] == 120.0


def test_a_bad_keep_alive_is_a_400_saying_the_forms(client: TestClient) -> None:
    answer = client.post("/prompt", json={**PROMPT, "keepAlive": "soon"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(
        "body/keepAlive: keepAlive must be seconds (a number, e.g. 300) or a duration text"
        ' such as "90s"'
    )
    chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "keep_alive": True}
    answer = client.post("/v1/chat/completions", json=chat)
    assert answer.status_code == 400 and "body/keep_alive" in answer.text


def test_a_model_that_cannot_fit_is_a_503_naming_sizes(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.load_error = ModelTooLargeError(
        'model "alpha.gguf" cannot be loaded: needs 205 MB of RAM, more than memoryBudgetMb 150 MB'
    )
    answer = client.post("/prompt", json=PROMPT)
    assert answer.status_code == 503
    assert "more than memoryBudgetMb 150 MB" in answer.json()["error"]


def test_load_and_unload_operations(client: TestClient, engine: FakeEngine) -> None:
    answer = client.post(
        "/models/load", json={"model": "beta", "contextSize": 1024, "keepAlive": "10m"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "beta.gguf" and body["loadModelStatus"] == "load"
    assert engine.acquired[-1] == ("beta.gguf", None, 1024)
    assert engine.keep_alives[-1] == 600.0
    assert [entry["name"] for entry in body["loadedModels"]] == ["beta.gguf"]
    answer = client.post("/models/unload", json={"model": "beta"})
    assert answer.status_code == 200
    assert answer.json()["unloaded"] is True and answer.json()["loadedModels"] == []
    assert client.post("/models/unload", json={"model": "beta"}).json()["unloaded"] is False
    missing = client.post("/models/load", json={"model": "nope"})
    assert missing.status_code == 400
    assert missing.json()["error"] == 'Model not found: "nope"'
    assert client.post("/models/load", json={}).status_code == 400


def test_the_operations_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/models/load", "/models/unload", "/models/loaded"} <= set(paths)
    assert (
        "keepAlive"
        in paths["/models/load"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )


def test_the_operations_need_an_api_key_when_keys_are_set(services: ServiceContext) -> None:
    services.settings = dataclasses.replace(services.settings, api_keys=("k-1",))
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        for path in ("/models/load", "/models/unload"):
            assert client.post(path, json={"model": "alpha"}).status_code == 401
        assert client.get("/models/loaded").status_code == 401
        keyed = client.post("/models/load", json={"model": "alpha"}, headers={"x-api-key": "k-1"})
        assert keyed.status_code == 200


def test_health_names_the_model_whose_child_died(client: TestClient, engine: FakeEngine) -> None:
    engine.alive = False
    engine.residents = [resident("beta.gguf", alive=False), resident("alpha.gguf")]
    reasons = client.get("/health").json()["reasons"]
    assert reasons == [
        'the engine process of "beta.gguf" exited; it restarts on that model\'s next request'
    ]
