"""A fake of the engine's ports (`mentator.engine.ports`): an `EngineManagerPort` whose handles
answer what each test scripts, recording every call. No HTTP and no service around it, so the
use-case tests (`tests/python/mentator/inference/`) use it as it is; `fake_engine` builds a whole
service over it for the HTTP tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mentator.backends.choice import BackendChoice
from mentator.engine.errors import EngineError
from mentator.engine.ports import (
    CompletionDelta,
    CompletionRequest,
    CompletionResult,
    KvCacheReport,
    LoadedModel,
    LoadStatus,
    ModelLike,
    ResidencyEvent,
    ResidentModel,
)


@dataclass
class Call:
    kind: str
    messages: Any = None
    options: Any = None
    grammar: str | None = None
    text: str | None = None


# Text (finished with "stop"), an exception to raise, or a whole result (a cut-off answer, ...).
Reply = str | Exception | CompletionResult


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
        if isinstance(reply, CompletionResult):
            return reply
        return CompletionResult(
            text=reply,
            reasoning=None,
            finish_reason="stop",
            prompt_tokens=7,
            completion_tokens=3,
            timings=dict(self.engine.timings),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionDelta]:
        self.engine.calls.append(
            Call("stream", self._messages(request), dict(request.options), request.grammar)
        )
        for piece in self.engine.stream_pieces:
            if self.engine.stream_delay_s:
                await asyncio.sleep(self.engine.stream_delay_s)
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
    stream_delay_s: float = 0.0  # before each streamed piece
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
    timings: dict[str, float] = field(default_factory=dict)  # of each whole answer
    restart_counts: dict[str, int] = field(default_factory=dict)
    kv_report: KvCacheReport | None = None
    keep_alives: list[float | None] = field(default_factory=list)  # of each acquire
    residents: list[ResidentModel] = field(default_factory=list)  # what loaded_models shows
    events: list[ResidencyEvent] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    pinned: list[str] = field(default_factory=list)
    computing_at_once: int | None = None  # what models_computing_at_once answers

    @property
    def backend(self) -> BackendChoice:
        return self.choice

    def current(self) -> LoadedModel | None:
        return self.loaded

    def resident(self, name: str) -> LoadedModel | None:
        return self.loaded if self.loaded is not None and self.loaded.name == name else None

    def loaded_models(self) -> list[ResidentModel]:
        """``residents`` when a test sets them, else the one ``loaded`` model."""
        if self.residents or self.loaded is None:
            return list(self.residents)
        loaded = self.loaded
        return [
            ResidentModel(
                name=loaded.name,
                backend=self.choice.backend,
                gpulayer=loaded.gpulayer,
                context_size=loaded.context_size,
                size_mb=loaded.size_mb,
                estimated_mb=loaded.size_mb,
                estimated_vram_mb=0,
                loaded_at=loaded.load_timestamp,
                last_used_at=loaded.load_timestamp,
                expires_at=None,
                pinned=False,
                in_flight=0,
                alive=self.alive is not False,
            )
        ]

    def residency_events(self, after_seq: int) -> list[ResidencyEvent]:
        return [event for event in self.events if event.seq > after_seq]

    def engine_alive(self) -> bool | None:
        return self.alive

    def models_computing_at_once(self) -> int | None:
        return self.computing_at_once

    def restarts(self) -> dict[str, int]:
        return dict(self.restart_counts)

    async def kv_caches(self) -> list[KvCacheReport]:
        return [self.kv_report] if self.kv_report is not None else []

    async def kv_cache(self) -> KvCacheReport | None:
        return self.kv_report

    async def load(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> LoadStatus:
        handle, status = await self.acquire(model, gpulayer, context_size, keep_alive_s)
        handle.release()
        return status

    def pin(self, names: Sequence[str]) -> None:
        self.pinned = list(names)

    async def unload(self, name: str) -> bool:
        self.unloaded.append(name)
        if self.loaded is not None and self.loaded.name == name:
            self.loaded = None
            return True
        return False

    async def acquire(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> tuple[FakeHandle, LoadStatus]:
        self.acquired.append((model.name, gpulayer, context_size))
        self.keep_alives.append(keep_alive_s)
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
