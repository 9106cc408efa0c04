"""The shutdown drain of the running server (`server.serve`, real uvicorn, fake engine): on SIGTERM
the port stays open, /health says "draining", new requests get 503 + Retry-After, the requests
in flight (streams included) finish, then the process would exit 0; the end of the grace (or a
second signal) cuts off what still runs, with an error the client sees and a log line."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from mentator.context import ServiceContext
from mentator.server import serve
from mentator_testing.fake_engine import FakeEngine, build_settings, build_test_services
from mentator_testing.service_process import free_port

PROMPT = {"model": "alpha.gguf", "message": {"user": "hi"}, "durationMsec": 60000}
CHAT = {"model": "alpha.gguf", "messages": [{"role": "user", "content": "hi"}], "stream": True}

Scenario = Callable[[httpx.AsyncClient, Callable[[], None]], Awaitable[Any]]


def _services(tmp_path: Path, engine: FakeEngine, **settings: Any) -> ServiceContext:
    base = build_settings(tmp_path, queue_limit=8, parallel=2)
    return build_test_services(dataclasses.replace(base, port=free_port(), **settings), engine)


def _run(context: ServiceContext, engine: FakeEngine, scenario: Scenario) -> tuple[int, Any, float]:
    """Serve ``context``, run ``scenario`` against it (it gets a client and ``sigterm``), return
    the exit code, the scenario's result and the seconds serve ran after the first SIGTERM."""

    def initialize(target: ServiceContext) -> None:
        target.registry.rescan()
        target.backend = engine.choice
        target.engine = engine

    async def main() -> tuple[int, Any, float]:
        server = asyncio.create_task(serve(context, initialize=initialize))
        signalled: list[float] = []

        def sigterm() -> None:
            signalled.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler: the real path

        base_url = f"http://127.0.0.1:{context.settings.port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            for _ in range(200):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            result = await scenario(http, sigterm)
        code = await asyncio.wait_for(server, 30)
        return code, result, time.monotonic() - signalled[0]

    return asyncio.run(main())


def _messages(context: ServiceContext) -> list[str]:
    assert context.corelog is not None
    return [str(row["message"]) for row in reversed(context.corelog.after_id(0, 500))]


async def _until_running(context: ServiceContext, count: int) -> None:
    for _ in range(200):
        if context.queue.running() >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the request never reached the engine")


def test_in_flight_requests_finish_while_new_ones_get_503(tmp_path: Path) -> None:
    engine = FakeEngine(delay_s=1.0, stream_pieces=["a", "b", "c"], stream_delay_s=0.3)
    context = _services(tmp_path, engine)

    async def scenario(http: httpx.AsyncClient, sigterm: Callable[[], None]) -> dict[str, Any]:
        prompt = asyncio.ensure_future(http.post("/prompt", json=PROMPT))
        events: list[str] = []

        async def stream() -> None:
            async with http.stream("POST", "/v1/chat/completions", json=CHAT) as response:
                async for line in response.aiter_lines():
                    if line:
                        events.append(line)

        streaming = asyncio.ensure_future(stream())
        await _until_running(context, 2)
        sigterm()
        await asyncio.sleep(0.1)
        health = await http.get("/health")
        refused = await http.post("/prompt", json=PROMPT)
        version = await http.get("/state/version")
        answered = await prompt
        await streaming
        return {
            "health": health,
            "refused": refused,
            "version": version,
            "answered": answered,
            "events": events,
        }

    code, seen, _ = _run(context, engine, scenario)
    assert code == 0
    assert seen["health"].status_code == 503
    assert seen["health"].json()["status"] == "draining"
    assert seen["health"].json()["inFlight"] == 2
    assert seen["refused"].status_code == 503
    assert seen["refused"].headers["Retry-After"] == "2"
    assert seen["refused"].json()["error"].startswith("service is shutting down (draining)")
    assert seen["version"].status_code == 200  # the port is open, the rest answers
    assert seen["answered"].status_code == 200
    assert seen["events"][-1] == "data: [DONE]"
    assert '"content":"c"' in "".join(seen["events"])  # the last token made it
    assert engine.shut_down
    messages = _messages(context)
    assert any(message.startswith("DRAIN: shutting down") for message in messages)
    assert any(message.startswith("DRAIN: done after") for message in messages)
    assert messages.index("FINISH") > max(
        index for index, message in enumerate(messages) if message.startswith("DRAIN")
    )


def test_the_end_of_the_grace_cuts_off_what_still_runs_with_a_503(tmp_path: Path) -> None:
    engine = FakeEngine(delay_s=30)
    context = _services(tmp_path, engine, drain_grace_msec=500)

    async def scenario(http: httpx.AsyncClient, sigterm: Callable[[], None]) -> httpx.Response:
        prompt = asyncio.ensure_future(http.post("/prompt", json=PROMPT))
        await _until_running(context, 1)
        sigterm()
        return await prompt

    code, cut, after_s = _run(context, engine, scenario)
    assert code == 0 and after_s < 10
    assert cut.status_code == 503
    assert cut.headers["Retry-After"] == "2"
    assert "the drain grace of 0.5 s (drainGraceMsec) ended" in cut.json()["error"]
    messages = _messages(context)
    assert (
        "DRAIN: the grace of 0.5 s ended with 1 request(s) still in flight (waiting or"
        " generating): each gets a 503 'shutting down' error now"
    ) in messages
    assert context.chatlog is not None
    assert [row["code"] for row in context.chatlog.after_id(0, 10)] == [503]


def test_a_second_signal_ends_the_grace_at_once(tmp_path: Path) -> None:
    engine = FakeEngine(delay_s=30)
    context = _services(tmp_path, engine, drain_grace_msec=60000)

    async def scenario(http: httpx.AsyncClient, sigterm: Callable[[], None]) -> httpx.Response:
        prompt = asyncio.ensure_future(http.post("/prompt", json=PROMPT))
        await _until_running(context, 1)
        sigterm()
        await asyncio.sleep(0.3)
        sigterm()
        return await prompt

    code, cut, after_s = _run(context, engine, scenario)
    assert code == 0 and after_s < 10
    assert cut.status_code == 503


def test_the_notice_keeps_the_port_open_and_health_draining_when_idle(tmp_path: Path) -> None:
    engine = FakeEngine()
    context = _services(tmp_path, engine, drain_notice_msec=1500)

    async def scenario(http: httpx.AsyncClient, sigterm: Callable[[], None]) -> httpx.Response:
        sigterm()
        await asyncio.sleep(0.5)
        return await http.get("/health")

    code, health, after_s = _run(context, engine, scenario)
    assert code == 0
    assert health.status_code == 503 and health.json()["status"] == "draining"
    assert after_s >= 1.5
