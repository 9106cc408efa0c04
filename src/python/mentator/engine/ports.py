"""What the layers above need of the engine: the values that cross the boundary
(`CompletionRequest` in; `CompletionResult` / `CompletionDelta` out; `LoadedModel`) and two
protocols, `EngineManagerPort` (residency: which model runs, on which backend) and
`EngineHandlePort` (one request's use of it).

`manager.EngineManager` / `manager.EngineHandle` implement them; the HTTP tests pass a fake. The
use-cases (`inference/`) and the request context depend on this module, never on the concrete
classes or the HTTP client (an import contract says so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mentator.backends.choice import BackendChoice

LoadStatus = Literal["load", "exists"]
Message = Mapping[str, Any]


@dataclass(frozen=True)
class CompletionRequest:
    """One generation, whole or streamed: a chat (``messages``, the model's own chat template
    applied by the engine) or, when ``prompt`` is set, a text completed as given (no template).

    ``options`` are ours (config ``defaultOptions`` names, `config.options`); ``grammar`` is GBNF
    text constraining the answer."""

    messages: Sequence[Message] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    grammar: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class CompletionResult:
    text: str
    reasoning: str | None
    finish_reason: str | None  # "stop" (end/stop word), "length" (maxTokens hit), ...
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # llama-server's last stream event


@dataclass(frozen=True)
class CompletionDelta:
    text: str
    reasoning: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    timings: dict[str, float] | None
    raw: dict[str, Any]


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


@dataclass(frozen=True)
class ResidentModel:
    """One model held in memory now: a /state ``loadedModels`` entry. Times are ms since the
    epoch; ``expires_at`` None = kept until evicted (pinned, busy, or no keep-alive limit)."""

    name: str
    backend: str
    gpulayer: float | None
    context_size: int | None
    size_mb: int
    estimated_mb: int
    estimated_vram_mb: int  # per GPU; 0 on the CPU
    loaded_at: int
    last_used_at: int
    expires_at: int | None
    pinned: bool
    in_flight: int
    alive: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "backend": self.backend,
            "gpulayer": self.gpulayer,
            "contextSize": self.context_size,
            "sizeMb": self.size_mb,
            "estimatedMemoryMb": self.estimated_mb,
            "estimatedVramMbPerGpu": self.estimated_vram_mb,
            "loadedAt": self.loaded_at,
            "lastUsedAt": self.last_used_at,
            "expiresAt": self.expires_at,
            "pinned": self.pinned,
            "inFlight": self.in_flight,
            "alive": self.alive,
        }


@dataclass(frozen=True)
class ResidencyEvent:
    """A load (``kind`` "load": ``seconds`` it took) or an eviction ("evict"), with why; ``seq``
    numbers them so a reader (the metrics) takes each once."""

    seq: int
    kind: Literal["load", "evict"]
    model: str
    reason: str
    seconds: float = 0.0


@dataclass(frozen=True)
class KvCacheReport:
    """The KV cache of the running child, as llama-server's ``/slots`` reports it: each slot's
    context size (``n_ctx``) and the tokens its cache holds now (``n_prompt_tokens``: the prompt
    plus what was generated so far; an idle slot keeps its last conversation for prompt
    caching), and whether it is working (``is_processing``)."""

    model: str
    used_tokens: int
    capacity_tokens: int
    slots: int
    busy_slots: int

    @property
    def usage_ratio(self) -> float:
        return self.used_tokens / self.capacity_tokens if self.capacity_tokens else 0.0


class ModelLike(Protocol):
    """What the engine reads from `models.discovery.ModelInfo` (the last three: the memory
    estimate, `engine.residency`)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def size_kb(self) -> int: ...

    @property
    def pooling_type(self) -> int | None: ...

    @property
    def layer_count(self) -> int | None: ...

    @property
    def context_length(self) -> int | None: ...

    @property
    def kv_bytes_per_token(self) -> int | None: ...

    @property
    def kv_restore_safe(self) -> bool: ...


class EngineHandlePort(Protocol):
    """One request's use of the loaded engine (`engine.manager.EngineHandle`)."""

    async def complete(self, request: CompletionRequest) -> CompletionResult: ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionDelta]: ...

    async def embed(self, text: str) -> list[float]: ...

    def release(self) -> None: ...


class EngineManagerPort(Protocol):
    """What the rest of the service needs of `engine.manager.EngineManager`."""

    @property
    def backend(self) -> BackendChoice: ...

    def current(self) -> LoadedModel | None:
        """The most recently used resident model (the original's one ``currentModel``)."""
        ...

    def resident(self, name: str) -> LoadedModel | None:
        """The resident model of that name (None: not loaded)."""
        ...

    def loaded_models(self) -> Sequence[ResidentModel]:
        """Every resident model, most recently used first."""
        ...

    def residency_events(self, after_seq: int) -> Sequence[ResidencyEvent]:
        """Loads and evictions numbered above ``after_seq`` (the last ones kept)."""
        ...

    def engine_alive(self) -> bool | None: ...

    def models_computing_at_once(self) -> int | None:
        """How many resident models may compute at the same time without their threads fighting
        for the cores (`scheduling.ComputeTurns`); None: no limit (a GPU computes)."""
        ...

    def restarts(self) -> Mapping[str, int]:
        """By model name: children found dead and replaced since the service started."""
        ...

    async def kv_cache(self) -> KvCacheReport | None:
        """The most recently used child's KV cache (None: no child, or it did not answer)."""
        ...

    async def kv_caches(self) -> Sequence[KvCacheReport]:
        """Every resident model's KV cache (those that answered in time)."""
        ...

    async def acquire(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> tuple[EngineHandlePort, LoadStatus]:
        """A handle on a child serving ``model`` with these settings (loading it when needed);
        ``keep_alive_s``: how long it stays once idle (None: the config's; 0: unload when done;
        negative: until evicted)."""
        ...

    async def load(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> LoadStatus:
        """Make ``model`` resident without a request (the API's load operation)."""
        ...

    def pin(self, names: Sequence[str]) -> None:
        """The models (canonical names) never evicted nor expired: ``pinnedModels``."""
        ...

    async def unload(self, name: str) -> bool:
        """Unload the model of that name once its requests in flight are done (False: it was
        not loaded)."""
        ...

    async def shutdown(self) -> None: ...
