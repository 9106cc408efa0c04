"""``python -m mentator replay``: stored requests (a real chat log, written by the service itself)
re-sent to a service listening on a real port (uvicorn, fake engine), compared per request and in
total; and the client's limits (API key, concurrency, rate, redirects, one host)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.cli import main as mentator_main
from mentator.context import ServiceContext
from mentator.replay.answers import PROMPT, V1_CHAT, V1_TEXT, route_of
from mentator.replay.cli import main as replay_main
from mentator.replay.cli import since_ms
from mentator.replay.diff import json_diff
from mentator.replay.runner import Target, TargetError
from mentator_testing.fake_engine import FakeEngine, Reply, build_settings, build_test_services
from mentator_testing.service_process import free_port

SCHEMA = {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}
CHAT = {"model": "beta", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
# What the stored service answered, in the order of the requests below.
STORED_REPLIES = ["Paris", '{"n": 1}', "Hi there", "once upon"]


def services_in(folder: Path, engine: FakeEngine, **overrides: Any) -> ServiceContext:
    return build_test_services(build_settings(folder, **overrides), engine)


@pytest.fixture
def chat_db(tmp_path: Path) -> Iterator[Path]:
    """A chat log written by the service: six exchanges of the three stored routes, a stream
    and a failure."""
    engine = FakeEngine(replies=list(STORED_REPLIES), delay_s=0.05)
    services = services_in(tmp_path / "stored", engine, save_prompt=True)
    with TestClient(create_app(services)) as client:
        prompt = {"model": "alpha", "message": {"user": "Capital of France?"}, "durationMsec": 9000}
        assert client.post("/prompt", json=prompt).status_code == 200
        shaped = {**prompt, "format": {"useGrammar": True, "jsonSchema": SCHEMA}}
        assert client.post("/prompt", json=shaped).json()["result"]["data"] == {"n": 1}
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        text = {"model": "alpha", "prompt": "Once", "max_tokens": 5}
        assert client.post("/v1/completions", json=text).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as sse:
            sse.read()
        unknown = {**prompt, "model": "gamma"}
        assert client.post("/prompt", json=unknown).status_code == 400
    assert services.database is not None
    services.database.close()
    yield services.settings.db_file


@contextmanager
def serving(services: ServiceContext) -> Iterator[str]:
    """The app on a free loopback port (its own thread and event loop)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def replay(
    *args: str, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[int, list[dict[str, Any]], dict[str, Any], str]:
    """Run the command: (exit code, the per-request lines by id, the summary line, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = replay_main(list(args), stdout=out, stderr=err, transport=transport)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    summary = lines.pop()["summary"] if lines and "summary" in lines[-1] else {}
    return code, sorted(lines, key=lambda line: line["id"]), summary, err.getvalue()


def candidate(tmp_path: Path, replies: list[str], **overrides: Any) -> ServiceContext:
    return services_in(
        tmp_path / "candidate", FakeEngine(replies=list[Reply](replies)), **overrides
    )


def test_the_same_answers_are_identical(chat_db: Path, tmp_path: Path) -> None:
    with serving(candidate(tmp_path, list(STORED_REPLIES))) as url:
        code, lines, summary, human = replay(
            "--db", str(chat_db), "--against", url, "--concurrency", "1"
        )
    assert code == 0
    assert [line["route"] for line in lines] == [PROMPT, PROMPT, V1_CHAT, V1_TEXT, V1_CHAT, PROMPT]
    assert [line["outcome"] for line in lines] == [
        "identical",
        "identical",
        "identical",
        "identical",
        "identical",  # the stream, put together: "Hel" + "lo"
        "both_error",  # the unknown model, then and now
    ]
    assert all(line["latencyRatio"] > 0 for line in lines[:5])
    assert lines[5]["replayed"]["code"] == 400 and "gamma" in lines[5]["replayed"]["error"]
    assert summary["total"] == 6 and summary["identical"] == 5
    assert summary["identicalShare"] == pytest.approx(5 / 6, abs=1e-3)
    assert summary["latencyRatioMedian"] is not None
    assert "5 identical (83.3 %)" in human and "1 failed on both" in human


def test_different_answers_come_with_a_structural_diff(chat_db: Path, tmp_path: Path) -> None:
    replies = ["Paris", '{"n": 2}', "Hello there", "once upon"]
    with serving(candidate(tmp_path, replies)) as url:
        code, lines, summary, _ = replay(
            "--db",
            str(chat_db),
            "--against",
            url,
            "--concurrency",
            "1",
            "--route",
            "prompt",
            "--route",
            "v1-chat",
        )
    assert code == 0
    by_id = {line["id"]: line for line in lines}
    assert set(by_id) == {1, 2, 3, 5, 6}  # --route left the text completion out
    assert by_id[1]["outcome"] == "identical"
    assert by_id[2]["outcome"] == "different"
    assert by_id[2]["diff"] == [{"path": "/n", "stored": 1, "replayed": 2}]
    assert by_id[3]["diff"] == [{"path": "", "stored": "Hi there", "replayed": "Hello there"}]
    assert summary["different"] == 2 and summary["identical"] == 2


def test_an_error_on_one_side_is_reported(chat_db: Path, tmp_path: Path) -> None:
    services = candidate(tmp_path, ["Paris"])
    (services.settings.model_dir / "gamma.gguf").write_bytes(b"GGUF-not-really" * 100)
    services.registry.rescan()  # the model that was missing exists now
    assert isinstance(services.engine, FakeEngine)
    services.engine.replies = ["Paris", RuntimeError("boom")]
    with serving(services) as url:
        _, lines, summary, _ = replay(
            "--db", str(chat_db), "--against", url, "--concurrency", "1", "--route", "prompt"
        )
    by_id = {line["id"]: line for line in lines}
    assert by_id[1]["outcome"] == "identical"
    assert by_id[2]["outcome"] == "error_replayed"
    assert by_id[2]["replayed"]["code"] == 500
    assert by_id[6]["outcome"] == "error_stored"  # failed in the log, answered now
    assert by_id[6]["stored"] == {
        "code": 400,
        "ms": by_id[6]["stored"]["ms"],
        "error": ('Model not found: "gamma"'),
    }
    assert by_id[6]["latencyRatio"] is None
    assert (summary["error_replayed"], summary["error_stored"]) == (1, 1)


def test_api_keys_are_sent(chat_db: Path, tmp_path: Path) -> None:
    services = candidate(tmp_path, list(STORED_REPLIES) * 2)
    services.settings = dataclasses.replace(services.settings, api_keys=("s3cret",))
    with serving(services) as url:
        _, without, _, _ = replay("--db", str(chat_db), "--against", url, "--limit", "1")
        _, with_key, _, _ = replay(
            "--db", str(chat_db), "--against", url, "--limit", "1", "--api-key", "s3cret"
        )
    assert without[0]["outcome"] == "error_replayed" and without[0]["replayed"]["code"] == 401
    assert with_key[0]["outcome"] == "identical"


def recording(
    answer: Callable[[httpx.Request], httpx.Response], hold_s: float = 0.0
) -> tuple[httpx.MockTransport, list[tuple[float, str]], list[int]]:
    """A transport that answers ``answer``, after ``hold_s``; it records when each request
    came (and to where) and the most requests in flight at once."""
    seen: list[tuple[float, str]] = []
    flight = [0, 0]  # now, most

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append((time.monotonic(), str(request.url)))
        flight[0] += 1
        flight[1] = max(flight)
        await asyncio.sleep(hold_s)
        flight[0] -= 1
        return answer(request)

    return httpx.MockTransport(handler), seen, flight


def ok_prompt(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"result": {"data": "Paris"}})


def test_concurrency_is_bounded(chat_db: Path) -> None:
    transport, seen, flight = recording(ok_prompt, hold_s=0.1)
    replay(
        "--db", str(chat_db), "--against", "http://svc:1", "--concurrency", "2", transport=transport
    )
    assert len(seen) == 6 and flight[1] == 2


def test_the_rate_limits_the_starts(chat_db: Path) -> None:
    transport, seen, _ = recording(ok_prompt)
    replay(
        "--db",
        str(chat_db),
        "--against",
        "http://svc:1",
        "--concurrency",
        "6",
        "--rate",
        "20",
        transport=transport,
    )
    starts = sorted(when for when, _ in seen)
    assert len(starts) == 6
    assert starts[-1] - starts[0] >= 5 * (1 / 20) * 0.9


def test_requests_go_only_to_the_named_service(chat_db: Path) -> None:
    def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "http://other.example/prompt"})

    transport, seen, _ = recording(elsewhere)
    _, lines, _, _ = replay(
        "--db", str(chat_db), "--against", "http://svc:8080/base/", transport=transport
    )
    assert {url for _, url in seen} == {
        "http://svc:8080/base/prompt",
        "http://svc:8080/base/v1/chat/completions",
        "http://svc:8080/base/v1/completions",
    }
    assert len(seen) == 6  # no redirect followed
    assert all(
        "redirect to http://other.example/prompt not followed" in line["replayed"]["error"]
        for line in lines
    )


def test_targets_and_usage_errors(chat_db: Path, tmp_path: Path) -> None:
    assert Target.parse("http://h:1/p/").url_for("/prompt") == "http://h:1/p/prompt"
    for bad in ("ftp://h/", "http:///x", "http://h/?q=1", "http://u:p@h/"):
        with pytest.raises(TargetError):
            Target.parse(bad)
    with pytest.raises(TargetError, match="refusing"):
        Target.parse("http://h:1").url_for("@other:2/prompt")
    assert replay("--db", str(chat_db), "--against", "ftp://h")[0] == 2
    assert replay("--db", str(chat_db), "--against", "http://h", "--since", "yesterday")[0] == 2
    code, _, _, err = replay("--db", str(tmp_path / "none.db"), "--against", "http://h")
    assert code == 1 and "none.db" in err
    assert mentator_main(["replay", "--db", str(chat_db)]) == 2  # --against is required


def test_since_and_shapes(chat_db: Path) -> None:
    now = 1_700_000_000_000
    assert since_ms("90m", now) == now - 90 * 60_000
    assert since_ms("2d", now) == now - 2 * 86_400_000
    assert since_ms("1699999999000", now) == 1_699_999_999_000
    assert since_ms("2023-11-14T22:13:20+00:00", now) == now
    _, lines, _, _ = replay(
        "--db",
        str(chat_db),
        "--against",
        "http://h",
        "--since",
        "1h",
        transport=recording(ok_prompt)[0],
    )
    assert len(lines) == 6
    _, lines, _, _ = replay(
        "--db",
        str(chat_db),
        "--against",
        "http://h",
        "--since",
        "2999-01-01",
        transport=recording(ok_prompt)[0],
    )
    assert lines == []
    assert route_of({"model": "m", "message": {"user": "x"}, "durationMsec": 1}) == PROMPT
    assert route_of({"model": "m", "messages": []}) == V1_CHAT
    assert route_of({"model": "m", "prompt": "x"}) == V1_TEXT
    assert route_of({"model": "m", "input": "x"}) is None
    assert json_diff({"a": [1, 2], "b": True}, {"a": [1], "b": 1, "c/d": None}) == [
        {"path": "/a/1", "stored": 2},
        {"path": "/b", "stored": True, "replayed": 1},
        {"path": "/c~1d", "replayed": None},
    ]
