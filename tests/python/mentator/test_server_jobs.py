"""The running service's background jobs (`server.serve`): retention of both logs at start,
with the configured `log.liveDay` (issue 15: a retention that was never started, or got the
default liveDay, or was not handed the chat store, passed every other test)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from mentator.config.settings import LogSettings
from mentator.context import ServiceContext
from mentator.server import serve
from mentator_testing.fake_engine import build_settings, build_test_services
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
