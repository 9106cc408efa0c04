"""A rig for driving the use-cases through the engine port with a fake (no HTTP): real SQLite chat
log, real queue, real tool processes; a recording logger and a metrics observer
(`tests/python/mentator/inference/`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mentator.config.options import JSON_DEFAULTS
from mentator.config.settings import LogSettings, Settings
from mentator.engine.ports import EngineManagerPort
from mentator.inference.completion import Completions
from mentator.inference.drain import Drain
from mentator.inference.embedding import Embeddings
from mentator.inference.exchange import ExchangeRecorder, ExchangeReport, Kind
from mentator.inference.requests import Caller, PromptFormat, PromptRequest
from mentator.inference.residency import Residency
from mentator.inference.shadowing import ShadowPort
from mentator.inference.slots import Slots
from mentator.inference.timing import Duration
from mentator.models.discovery import ModelInfo
from mentator.scheduling import RequestQueue
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.database import Database
from mentator.storage.health import StorageHealth
from mentator.tools.registry import ToolRegistry
from mentator_testing.fake_engine_port import FakeEngine
from mentator_testing.recording_logger import RecordingLogger

T = TypeVar("T")
MODEL = "alpha.gguf"
OTHER_MODEL = "beta.gguf"


@dataclass
class Parts:
    """What the use-cases read at each request (a `ServiceContext` in the service)."""

    settings: Settings
    engine: EngineManagerPort | None
    chatlog: ChatLogStore | None
    startup_error: str | None = None
    tools: ToolRegistry | None = None
    drain: Drain = field(default_factory=Drain)
    shadow: ShadowPort | None = None


class Models:
    """Two models, ``alpha.gguf`` and ``beta.gguf``, trained for 2048 tokens."""

    def __init__(self, folder: Path) -> None:
        self.by_name: dict[str, ModelInfo] = {}
        for name in (MODEL, OTHER_MODEL):
            path = folder / name
            path.write_bytes(b"GGUF")
            self.by_name[name] = ModelInfo(name, name, path, 1, None, None, 4, context_length=2048)
        self.model = self.by_name[MODEL]

    def find(self, name: str) -> ModelInfo | None:
        return self.by_name.get(name)


@dataclass
class Observer:
    ended: list[tuple[str, Kind, int, Duration, int | None]] = field(default_factory=list)
    reports: list[ExchangeReport] = field(default_factory=list)

    def exchange_ended(self, report: ExchangeReport) -> None:
        self.reports.append(report)
        self.ended.append((report.route, report.kind, report.code, report.duration, report.tokens))


def settings_for(folder: Path, *, save_prompt: bool) -> Settings:
    return Settings(
        port=19777,
        host="127.0.0.1",
        model_dir=folder,
        db_file=folder / "test.db",
        tool_dir=None,
        tool_env_dir=None,
        default_options=dict(JSON_DEFAULTS),
        log=LogSettings(level="trace", live_day=30, save_prompt=save_prompt),
        engine_dir=None,
        parallel=1,
        queue_limit=1,
        threads=None,
        config_file=None,
        mode="use",
        tool_timeout_msec=5000,
    )


@dataclass
class Rig:
    engine: FakeEngine
    parts: Parts
    queue: RequestQueue
    logger: RecordingLogger
    observer: Observer
    completions: Completions
    embeddings: Embeddings
    residency: Residency

    def rows(self) -> list[dict[str, Any]]:
        assert self.parts.chatlog is not None
        return list(reversed(self.parts.chatlog.after_id(0, 100)))

    def run(self, work: Awaitable[T]) -> T:
        return asyncio.run(_awaited(work))


async def _awaited(work: Awaitable[T]) -> T:
    return await work


def caller(route: str = "/prompt", left: Callable[[], Awaitable[None]] | None = None) -> Caller:
    return Caller(f"API.POST {route}", f"[from 127.0.0.1] {route}", left, route)


def prompt_request(
    *, duration_msec: float = 20000, schema: Any = None, tools: list[str] | None = None
) -> PromptRequest:
    body = {"model": MODEL, "message": {"user": "Add 2 and 3"}, "durationMsec": duration_msec}
    return PromptRequest(
        body=body,
        model=MODEL,
        gpulayer=None,
        context_size=None,
        system=None,
        user="Add 2 and 3",
        duration_msec=duration_msec,
        options=None,
        format=None if schema is None else PromptFormat(True, schema),
        tool_server=tools,
    )


@contextmanager
def use_case_rig(tmp_path: Path) -> Iterator[Rig]:
    """The use-cases over a fake engine, with a chat log in ``tmp_path``."""
    engine = FakeEngine()
    database = Database(tmp_path / "test.db", StorageHealth())
    parts = Parts(settings_for(tmp_path, save_prompt=True), engine, ChatLogStore(database))
    queue = RequestQueue(1, 1)
    logger = RecordingLogger()
    observer = Observer()
    slots = Slots(parts, Models(tmp_path), queue)
    recorder = ExchangeRecorder(
        logger=logger, parts=parts, clock_ms=lambda: 1_700_000_000_000, observer=observer
    )
    yield Rig(
        engine,
        parts,
        queue,
        logger,
        observer,
        Completions(slots=slots, recorder=recorder, parts=parts, logger=logger),
        Embeddings(slots=slots, recorder=recorder),
        Residency(slots=slots, logger=logger),
    )
    database.close()
