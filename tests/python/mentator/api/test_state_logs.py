"""``/state*``, ``/log/*``, ``DELETE /log/chat`` and ``/embedding``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient

from mentator.backends.choice import BackendChoice, GpuDevice
from mentator.context import ServiceContext
from mentator.engine.errors import EngineRequestError
from mentator.version import VERSION

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine, LogReader

STAT_FIELDS = {
    "total",
    "success",
    "failed",
    "avgPromptDuration",
    "avgQueueDuration",
    "p95PromptDuration",
    "p95QueueDuration",
}


def test_version(client: TestClient) -> None:
    assert client.get("/state/version").json() == {"version": VERSION}


def test_models_in_scan_order(client: TestClient) -> None:
    models = client.get("/state/models").json()["models"]
    assert [model["name"] for model in models] == ["alpha.gguf", "beta.gguf"]
    assert models[0]["relativeFileName"] == "alpha.gguf"
    assert models[0]["sizeKb"] == 2
    assert "layerCount" not in models[0]  # not a real GGUF header: unknown is omitted


def test_models_rescan_on_demand(client: TestClient, services: ServiceContext) -> None:
    (services.settings.model_dir / "gamma.gguf").write_bytes(b"x")
    assert len(client.get("/state/models").json()["models"]) == 2
    assert len(client.get("/state/models?rescan=1").json()["models"]) == 3


def test_state_shape_before_any_load(client: TestClient, services: ServiceContext) -> None:
    state = client.get("/state").json()
    assert state["serverStartTimestamp"] == services.started_ms
    assert isinstance(state["serverUptimeSeconds"], int)
    assert state["currentModel"] is None
    assert state["gpuInfo"] == {
        "type": "cpu",
        "device": None,
        "totalVramMb": None,
        "usedVramMb": None,
    }
    assert state["memoryUsageMb"] > 0
    assert {"memoryHeapMb", "memoryExternalMb", "queueSize", "savePromptEnabled"} <= set(state)
    assert state["savePromptEnabled"] is False
    for key in ("stats1h", "stats3h", "stats24h"):
        assert set(state[key]) == STAT_FIELDS
    assert state["backend"] == {
        "name": "cpu",
        "cpuVariant": "x64",
        "reason": "no usable GPU",
        "skipped": {},
        "devices": [],
        # The one rendering (`BackendChoice.to_json`) also carries these:
        "backend": "cpu",
        "env": {},
        "fallbacks": [],
        "canary": None,
    }


def test_state_reports_loaded_model_and_gpu_backend(client: TestClient, engine: FakeEngine) -> None:
    engine.choice = BackendChoice(
        backend="cuda",
        reason="NVIDIA GPU found",
        skipped={},
        devices=[GpuDevice(name="RTX 4090", total_mb=24564, used_mb=512)],
    )
    client.post(
        "/prompt",
        json={"model": "beta", "message": {"user": "x"}, "durationMsec": 1000, "contextSize": 4096},
    )
    state = client.get("/state").json()
    assert state["currentModel"]["name"] == "beta.gguf"
    assert state["currentModel"]["contextSize"] == 4096
    assert "gpulayer" not in state["currentModel"]
    assert state["gpuInfo"] == {
        "type": "cuda",
        "device": "RTX 4090",
        "totalVramMb": 24564,
        "usedVramMb": 512,
    }
    assert state["backend"]["name"] == "cuda"
    assert state["backend"]["devices"] == [{"name": "RTX 4090", "totalMb": 24564, "usedMb": 512}]
    assert state["stats1h"]["failed"] == 0


def test_core_log_byid_opens_on_the_tail_then_follows_every_row(
    client: TestClient, services: ServiceContext
) -> None:
    for index in range(5):
        services.logger.debug("TEST", f"old line {index}")
    assert services.corelog is not None
    newest_id = max(int(str(row["id"])) for row in services.corelog.after_id(0, 200))
    # No afterId (and afterId=0, "nothing seen yet"): the newest rows, not the first ones.
    for url in ("/log/core/byid?limit=2", "/log/core/byid?afterId=0&limit=2"):
        tail = [row["id"] for row in client.get(url).json()["logs"]]
        assert tail == [newest_id, newest_id - 1], url
    # Following: more new rows than one page holds; none may be skipped or repeated.
    for index in range(7):
        services.logger.debug("TEST", f"new line {index}")
    every_new = {row["id"] for row in services.corelog.after_id(newest_id, 200)}
    assert len(every_new) >= 7
    seen: list[int] = []
    after = newest_id
    while page := client.get(f"/log/core/byid?afterId={after}&limit=2").json()["logs"]:
        ids = [row["id"] for row in page]
        assert ids == sorted(ids, reverse=True)  # newest first within a page
        assert len(ids) <= 2
        seen.extend(ids)
        after = max(ids)
    assert set(seen) == every_new and len(seen) == len(every_new)  # nothing skipped or repeated
    first = client.get("/log/core/byid").json()["logs"]
    assert {"id", "ts", "pipe", "kind", "message"} <= set(first[0])


def test_chat_log_byid_opens_on_the_tail(client: TestClient, services: ServiceContext) -> None:
    assert services.chatlog is not None
    for index in range(5):
        services.chatlog.write(index, 200, 1, 1, "{}", "{}", None)
    ids = [row["id"] for row in client.get("/log/chat/byid?limit=3").json()["logs"]]
    newest = max(int(str(row["id"])) for row in services.chatlog.after_id(0, 200))
    assert ids == [newest, newest - 1, newest - 2]


def test_log_paging_needs_integers(client: TestClient) -> None:
    for url, message in (
        ("/log/core/byid?limit=abc", "querystring/limit must be integer"),
        ("/log/chat/byid?afterId=x", "querystring/afterId must be integer"),
        ("/log/chat/byid?limit=0", "querystring/limit must be >= 1"),
    ):
        response = client.get(url)
        assert response.status_code == 400
        assert response.json()["error"] == message
    assert client.get("/log/core/byid?limit=5").status_code == 200  # the database still works


def test_chat_log_byid_and_delete(
    client: TestClient, services: ServiceContext, chat_log: LogReader
) -> None:
    for _ in range(3):
        client.post(
            "/prompt", json={"model": "missing", "message": {"user": "x"}, "durationMsec": 100}
        )
    rows = client.get("/log/chat/byid").json()["logs"]
    assert [row["code"] for row in rows] == [400, 400, 400]
    assert set(rows[0]) == {
        "id",
        "ts",
        "code",
        "durationPromptMsec",
        "durationQueueMsec",
        "request",
        "response",
        "answerRaw",
    }
    assert rows[0]["answerRaw"] == ""
    deleted = client.delete("/log/chat")
    assert deleted.json() == {"deleted": 3}
    assert chat_log(services) == []
    assert client.get("/log/chat/byid").json() == {"logs": []}
    logged = [
        row
        for row in client.get("/log/core/byid").json()["logs"]
        if row["pipe"] == "API.DELETE /log/chat"
    ]
    assert [row["message"] for row in logged] == ["deleted 3 chat log records"]


def test_bydate_files(client: TestClient, services: ServiceContext) -> None:
    services.logger.error("TEST", "boom", "detail line")
    client.post("/prompt", json={"model": "missing", "message": {"user": "x"}, "durationMsec": 100})
    today = datetime.fromtimestamp(time.time()).strftime("%Y%m%d")
    core = client.get(f"/log/core/bydate?date={today}").json()
    assert core[0]["filename"] == f"mentator-llm-service-corelogs-{today}-00001.txt"
    assert "[error] [TEST] boom\n        detail line\n" in core[0]["content"]
    hour = datetime.fromtimestamp(time.time()).strftime("%H")
    chat = client.get(f"/log/chat/bydate?date={today}&hour={hour}").json()
    assert chat[0]["filename"] == f"mentator-llm-service-chatlogs-{today}-{hour}-00001.txt"
    assert "[400] duration prompt" in chat[0]["content"]
    assert client.get("/log/chat/bydate?date=19990101").json() == []


def test_bydate_bad_date_is_400(client: TestClient) -> None:
    response = client.get("/log/core/bydate?date=2026-01-01")
    assert response.status_code == 400
    assert response.json()["error"].startswith("querystring/date must be YYYYMMDD")
    assert client.get("/log/core/bydate?date=20260101&hour=25").status_code == 400


def test_log_routes_without_database(client: TestClient, services: ServiceContext) -> None:
    services.corelog = None
    services.health.unavailable("disk gone")
    response = client.get("/log/core/byid")
    assert response.status_code == 500
    assert response.json()["error"] == "the database is not available: disk gone"


def test_embedding(
    client: TestClient, engine: FakeEngine, services: ServiceContext, chat_log: LogReader
) -> None:
    response = client.post("/embedding", json={"model": "alpha", "message": "abcd"})
    assert response.status_code == 200
    assert response.json()["result"] == {"loadModelStatus": "load", "data": [0.5, -0.25, 4.0]}
    empty = client.post("/embedding", json={"model": "alpha.gguf", "message": ""})
    assert empty.json()["result"] == {"loadModelStatus": "exists", "data": []}
    assert chat_log(services) == []  # embeddings are not stored


def test_embedding_reuses_the_loaded_context(client: TestClient, engine: FakeEngine) -> None:
    client.post(
        "/prompt",
        json={
            "model": "alpha",
            "message": {"user": "x"},
            "durationMsec": 1000,
            "contextSize": 2048,
        },
    )
    response = client.post("/embedding", json={"model": "alpha", "message": "m"})
    assert response.json()["result"]["loadModelStatus"] == "exists"
    assert engine.acquired[-1] == ("alpha.gguf", None, 2048)


def test_embedding_errors(client: TestClient, engine: FakeEngine) -> None:
    missing = client.post("/embedding", json={"model": "nope", "message": "m"})
    assert missing.status_code == 400
    assert missing.json() == {
        "duration": {"promptMsec": missing.json()["duration"]["promptMsec"], "queueMsec": 0},
        "error": 'Model not found: "nope"',
    }
    assert (
        client.post("/embedding", json={"model": "alpha"}).json()["error"]
        == "body must have required property 'message'"
    )
    engine.embed_error = EngineRequestError("Input is longer than the context size")
    failed = client.post("/embedding", json={"model": "alpha", "message": "m"})
    assert failed.status_code == 500
    assert failed.json()["error"] == "Input is longer than the context size"
