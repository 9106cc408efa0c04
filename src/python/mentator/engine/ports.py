"""What the layers above need of the engine, as protocols: `EngineManagerPort` (residency: which
model runs, on which backend) and `EngineHandlePort` (one request's use of it).

`manager.EngineManager` / `manager.EngineHandle` implement them; the HTTP tests pass a fake. The
use-cases (`inference/`) and the request context depend on these, never on the concrete classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from mentator.backends.choice import BackendChoice
from mentator.engine.client import CompletionDelta, CompletionResult, Message

LoadStatus = Literal["load", "exists"]


@dataclass(frozen=True)
class LoadedModel:
    """The /state `currentModel`."""

    name: str
    size_mb: int
    load_timestamp: int  # ms since the epoch, when the load started
    gpulayer: float | None
    context_size: int | None

    def to_json(self) -> dict[str, object]:
        result: dict[str, object] = {
            "name": self.name,
            "sizeMb": self.size_mb,
            "loadTimestamp": self.load_timestamp,
        }
        if self.gpulayer is not None:
            result["gpulayer"] = self.gpulayer
        if self.context_size is not None:
            result["contextSize"] = self.context_size
        return result


class ModelLike(Protocol):
    """What the engine reads from `models.discovery.ModelInfo`."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def size_kb(self) -> int: ...

    @property
    def pooling_type(self) -> int | None: ...


class EngineHandlePort(Protocol):
    """One request's use of the loaded engine (`engine.manager.EngineHandle`)."""

    async def complete(
        self,
        messages: Sequence[Message],
        options: Mapping[str, Any] | None = None,
        *,
        grammar: str | None = None,
        json_schema: Any | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> CompletionResult: ...

    def stream(
        self,
        messages: Sequence[Message],
        options: Mapping[str, Any] | None = None,
        *,
        grammar: str | None = None,
        json_schema: Any | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[CompletionDelta]: ...

    async def complete_text(
        self, prompt: str, options: Mapping[str, Any] | None = None, *, grammar: str | None = None
    ) -> CompletionResult: ...

    def stream_text(
        self, prompt: str, options: Mapping[str, Any] | None = None, *, grammar: str | None = None
    ) -> AsyncIterator[CompletionDelta]: ...

    async def embed(self, text: str) -> list[float]: ...

    def release(self) -> None: ...


class EngineManagerPort(Protocol):
    """What the rest of the service needs of `engine.manager.EngineManager`."""

    @property
    def backend(self) -> BackendChoice: ...

    def current(self) -> LoadedModel | None: ...

    def engine_alive(self) -> bool | None: ...

    async def acquire(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None
    ) -> tuple[EngineHandlePort, LoadStatus]: ...

    async def shutdown(self) -> None: ...
