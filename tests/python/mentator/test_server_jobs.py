"""The running service's background jobs (`server.serve`): retention of both logs at start,
with the configured `log.liveDay` (issue 15: a retention that was never started, or got the
default liveDay, or was not handed the chat store, passed every other test); a job whose run
raises is logged and keeps running (issue 19: one exception ended the heartbeat for good)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from mentator import server
from mentator.config.settings import LogSettings
from mentator.context import ServiceContext
from mentator.memory import MemoryUsage, memory_usage
from mentator.server import serve
from mentator_testing.fake_engine import build_settings, build_test_services
from mentator_testing.fake_engine_port import FakeEngine
from mentator_testing.service_process import free_port

DAY_MS = 24 * 60 * 60 * 1000
NOW_MS = 1_800_000_000_000


def _seed(context: ServiceContext) -> None:
    assert context.corelog is not None and context.chatlog is not None
    for age_days in (3, 0.1):  # liveDay 2: the first goes, the second stays
        ts = int(NOW_MS - age_days * DAY_MS)
        context.corelog.write(ts, "TEST", "debug", f"core {age_days}", None)
        context.chatlog.write(ts, 200, 10, 0, "{}", "{}", f"chat {age_days}")


def _run_briefly(context: ServiceContext) -> None:
    async def main() -> int:
        stop = asyncio.Event()

        async def stop_soon() -> None:
            for _ in range(100):  # the retention job runs first thing, in a thread
                await asyncio.sleep(0.05)
                assert context.chatlog is not None
                if len(context.chatlog.after_id(0, 200)) < 2:
                    break
            stop.set()

        stopper = asyncio.create_task(stop_soon())
        code = await serve(context, initialize=lambda _context: None, stop=stop)
        await stopper
        return code

    assert asyncio.run(main()) == 0


def test_retention_runs_at_start_with_the_configured_live_day(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, save_prompt=True)
    settings = dataclasses.replace(
        settings,
        port=free_port(),
        log=LogSettings(level="error", live_day=2, save_prompt=True),
    )
    context = build_test_services(settings, None)
    context.clock_ms = lambda: NOW_MS
    _seed(context)
    _run_briefly(context)
    assert context.chatlog is not None and context.corelog is not None
    chat = [row["answerRaw"] for row in context.chatlog.after_id(0, 200)]
    assert chat == ["chat 0.1"]
    core = [row["message"] for row in context.corelog.after_id(0, 200) if row["pipe"] == "TEST"]
    assert core == ["core 0.1"]
    assert context.database is not None
    context.database.close()


def test_a_periodic_job_that_raises_is_logged_and_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def memory_once_broken() -> MemoryUsage:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("cannot read /proc/self/status")
        return memory_usage()

    monkeypatch.setattr(server, "memory_usage", memory_once_broken)
    monkeypatch.setattr(server, "HEARTBEAT_INTERVAL_S", 0.05)
    settings = dataclasses.replace(build_settings(tmp_path), port=free_port())
    context = build_test_services(settings, None)

    def messages() -> list[tuple[str, str, str]]:
        assert context.corelog is not None
        rows = reversed(context.corelog.after_id(0, 500))
        return [(str(row["pipe"]), str(row["kind"]), str(row["message"])) for row in rows]

    def beats() -> int:
        return sum(message.startswith("memory (rss)") for _, _, message in messages())

    async def main() -> int:
        stop = asyncio.Event()

        async def stop_after_two_beats() -> None:
            try:
                for _ in range(200):
                    await asyncio.sleep(0.025)
                    if beats() >= 2:
                        break
            finally:
                stop.set()

        stopper = asyncio.create_task(stop_after_two_beats())
        code = await serve(context, initialize=lambda _context: None, stop=stop)
        await stopper
        return code

    assert asyncio.run(main()) == 0
    logged = messages()
    failed = (
        "APP",
        "error",
        "periodic job heartbeat failed: OSError: cannot read /proc/self/status",
    )
    assert failed in logged
    assert beats() >= 2, "the heartbeat stopped after its first run raised"
    first_beat = next(i for i, (_, _, text) in enumerate(logged) if text.startswith("memory (rss)"))
    assert logged.index(failed) < first_beat
    assert context.database is not None
    context.database.close()


def test_pinned_models_are_pinned_and_loaded_and_an_unknown_name_is_logged(
    tmp_path: Path,
) -> None:
    settings = dataclasses.replace(
        build_settings(tmp_path), pinned_models=("ALPHA", "nope.gguf", "beta.gguf")
    )
    engine = FakeEngine()
    context = build_test_services(settings, engine)
    asyncio.run(server.load_pinned(context))
    assert engine.pinned == ["alpha.gguf", "beta.gguf"]
    assert [name for name, _, _ in engine.acquired] == ["alpha.gguf", "beta.gguf"]
    assert context.corelog is not None
    messages = [str(row["message"]) for row in context.corelog.after_id(0, 50)]
    assert any('pinnedModels: no model named "nope.gguf" was found' in m for m in messages)
