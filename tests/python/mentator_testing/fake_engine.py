"""A fake engine manager and real ServiceContext around it, for the HTTP-layer tests: real SQLite,
real model folder, real queue, and an engine that answers what each test scripts."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentator.backends.choice import BackendChoice
from mentator.config.options import JSON_DEFAULTS
from mentator.config.settings import LogSettings, Settings
from mentator.context import ServiceContext
from mentator.engine.errors import EngineError
from mentator.engine.ports import (
    CompletionDelta,
    CompletionRequest,
    CompletionResult,
    LoadedModel,
    LoadStatus,
    ModelLike,
)
from mentator.server import build_services

MODEL_NAMES = ("alpha.gguf", "beta.gguf")


@dataclass
class Call:
    kind: str
    messages: Any = None
    options: Any = None
    grammar: str | None = None
    text: str | None = None


Reply = str | Exception


class FakeHandle:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.released = False

    @staticmethod
    def _messages(request: CompletionRequest) -> list[Any]:
        # A text completion is recorded as one "raw" turn holding the prompt.
        if request.prompt is not None:
            return [{"role": "raw", "content": request.prompt}]
        return list(request.messages)

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        self.engine.calls.append(
            Call("complete", self._messages(request), dict(request.options), request.grammar)
        )
        if self.engine.delay_s:
            await asyncio.sleep(self.engine.delay_s)
        reply = self.engine.replies.pop(0) if self.engine.replies else "ok"
        if isinstance(reply, Exception):
            raise reply
        return CompletionResult(
            text=reply, reasoning=None, finish_reason="stop", prompt_tokens=7, completion_tokens=3
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionDelta]:
        self.engine.calls.append(
            Call("stream", self._messages(request), dict(request.options), request.grammar)
        )
        for piece in self.engine.stream_pieces:
            yield CompletionDelta(
                text=piece, reasoning="", finish_reason=None, usage=None, timings=None, raw={}
            )
        if self.engine.stream_error is not None:
            raise self.engine.stream_error
        yield CompletionDelta(
            text="",
            reasoning="",
            finish_reason="stop",
            usage={
                "prompt_tokens": 5,
                "completion_tokens": len(self.engine.stream_pieces),
                "total_tokens": 9,
            },
            timings=None,
            raw={},
        )

    async def embed(self, text: str) -> list[float]:
        self.engine.calls.append(Call("embed", text=text))
        if self.engine.delay_s:
            await asyncio.sleep(self.engine.delay_s)
        if self.engine.embed_error is not None:
            raise self.engine.embed_error
        return [] if text == "" else [0.5, -0.25, float(len(text))]

    def release(self) -> None:
        self.released = True
        self.engine.released += 1


@dataclass
class FakeEngine:
    """An EngineManagerPort that answers from `replies` (text or exception) in order."""

    replies: list[Reply] = field(default_factory=list)
    stream_pieces: list[str] = field(default_factory=lambda: ["Hel", "lo"])
    stream_error: EngineError | None = None  # raised after the pieces
    delay_s: float = 0.0
    load_error: EngineError | None = None
    embed_error: EngineError | None = None
    alive: bool | None = None
    calls: list[Call] = field(default_factory=list)
    acquired: list[tuple[str, float | None, int | None]] = field(default_factory=list)
    released: int = 0
    loaded: LoadedModel | None = None
    choice: BackendChoice = field(
        default_factory=lambda: BackendChoice(
            backend="cpu", reason="no usable GPU", cpu_variant="x64"
        )
    )
    shut_down: bool = False

    @property
    def backend(self) -> BackendChoice:
        return self.choice

    def current(self) -> LoadedModel | None:
        return self.loaded

    def engine_alive(self) -> bool | None:
        return self.alive

    async def acquire(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None
    ) -> tuple[FakeHandle, LoadStatus]:
        self.acquired.append((model.name, gpulayer, context_size))
        if self.load_error is not None:
            raise self.load_error
        key = (model.name, gpulayer, context_size)
        status: LoadStatus = "exists"
        if (
            self.loaded is None
            or (self.loaded.name, self.loaded.gpulayer, self.loaded.context_size) != key
        ):
            self.loaded = LoadedModel(model.name, 1, 1_700_000_000_000, gpulayer, context_size)
            status = "load"
        return FakeHandle(self), status

    async def shutdown(self) -> None:
        self.shut_down = True


def build_settings(
    tmp_path: Path,
    *,
    save_prompt: bool = False,
    default_options: dict[str, object] | None = None,
    queue_limit: int = 8,
    parallel: int = 1,
) -> Settings:
    model_dir = tmp_path / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_NAMES:
        (model_dir / name).write_bytes(b"GGUF-not-really" * 100)
    options = dict(JSON_DEFAULTS)
    options.update(default_options or {})
    return Settings(
        port=19777,
        host="127.0.0.1",
        model_dir=model_dir,
        db_file=tmp_path / "db" / "test.db",
        tool_dir=None,
        tool_env_dir=None,
        default_options=options,
        log=LogSettings(level="trace", live_day=30, save_prompt=save_prompt),
        engine_dir=None,
        parallel=parallel,
        queue_limit=queue_limit,
        threads=None,
        config_file=None,
        mode="use",
    )


def build_test_services(settings: Settings, engine: FakeEngine | None) -> ServiceContext:
    services = build_services(settings, stream_out=io.StringIO(), stream_err=io.StringIO())
    services.registry.rescan()
    if engine is not None:
        services.backend = engine.choice
        services.engine = engine
    return services


def read_core_log(services: ServiceContext) -> list[dict[str, object]]:
    assert services.corelog is not None
    return list(reversed(services.corelog.after_id(0, 200)))


def read_chat_log(services: ServiceContext) -> list[dict[str, object]]:
    assert services.chatlog is not None
    return list(reversed(services.chatlog.after_id(0, 200)))


ServicesFactory = Callable[..., ServiceContext]
LogReader = Callable[[ServiceContext], list[dict[str, object]]]
