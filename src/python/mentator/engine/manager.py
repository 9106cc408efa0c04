"""Model residency: several models loaded at once, each in its own supervised llama-server child.

Rules (reference §2.6, with the port's fixes and issue 21's residency):
* A request reuses the model's running child when the canonical model name, `gpulayer` and
  `contextSize` all equal the loaded ones ("exists"); otherwise that model's child is replaced
  ("load") — other models are untouched. The caller resolves the name first
  (`ModelRegistry.find`), so any spelling of a name reuses the model.
* A request for a resident model takes no lock: it never waits behind another model's load.
  Loads of one model are serialized by that model's lock (concurrent first requests cause one
  load; the others find it resident); placement decisions (what to evict) by one memory lock.
* Limits (`residency`): ``maxLoadedModels``, a RAM budget and the memory measured free, VRAM per
  GPU on a GPU backend, against an estimate from the GGUF header. When a load does not fit, the
  least recently used idle, unpinned model is evicted; a model with requests in flight never is
  (the load waits for one to become idle). With ``swapGrouping`` an eviction first waits while
  the residents are serving (`residency.swap_may_start`, bounded), so the requests for the
  missing model ride one load. A model that cannot fit even alone is refused
  (`ModelTooLargeError`), as is one that only pinned models block.
* Keep-alive: each request sets its model's (``keepAlive``; default ``keepAliveSec``); once idle
  the model is unloaded after it (0: at once; negative: never). ``pinnedModels`` never expire and
  are never evicted.
* Children always serve embeddings next to completions (`--embeddings`): `/embedding` does not
  force a reload; it reuses whatever `gpulayer`/`contextSize` the model runs with.
* A replacement waits until the requests running on the old child have finished; later requests
  for that model wait behind the reload (FIFO), so none starves.
* A failed load leaves that model not loaded.
* A child that died is restarted transparently by the next `acquire` of its model; the request
  that was running on it gets `EngineExitedError` ("engine process exited unexpectedly (code X):
  <output tail>"). When the request never reached the child (connection refused: it died while
  idle, before the exit was noticed), the error says so (`unsent`) and the use-case retries it
  once on a fresh child (`inference.slots.run_on_engine`). Each such restart is counted by model
  (`restarts`, the metric ``mentator_engine_restarts_total``). Other models' children are
  separate processes: one crashing fails no other model's requests.
* On a GPU backend, a child that fails to start is retried once on the CPU; when that works the
  manager stays on the CPU and the backend choice records why (shown by /state).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Protocol

from mentator.backends.choice import BackendChoice
from mentator.backends.layout import NOT_CONFIGURED, EngineLayout
from mentator.engine.client import EngineClient
from mentator.engine.errors import (
    EngineConnectionError,
    EngineError,
    EngineExitedError,
    EngineNotFoundError,
    EngineStartError,
    ModelTooLargeError,
)
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
from mentator.engine.process import LaunchSpec, LlamaServerProcess, pooling_for
from mentator.engine.residency import (
    GROUPING_BOUND_S,
    REASON_CRASHED,
    REASON_EXPIRED,
    REASON_RELOAD,
    REASON_REQUESTED,
    REASON_SHUTDOWN,
    Budget,
    MemoryNeed,
    estimate_need,
    least_recently_used,
    refusal,
    shortfall,
    swap_may_start,
)
from mentator.engine.warm import WarmStore
from mentator.logging_protocol import LoggerProtocol

APP_PIPE = "APP"
ENGINE_PIPE = "ENGINE"
DEFAULT_START_TIMEOUT_S = 600.0  # a large model from a slow disk takes minutes
EVENTS_KEPT = 1000  # loads/evictions remembered for the metrics between two scrapes
# Warm swaps: evictions whose child's KV cache is saved first (not a crash: the child is gone;
# not a shutdown: the service stops), and the time one slot's save or restore may take.
WARM_SAVE_REASONS = frozenset({"capacity", "memory", "expired", "reload", "requested"})
WARM_IO_S = 60.0
# Grouping (`swapGrouping`, `residency.swap_may_start`): how often a swap that waits for the
# residents to go quiet, or for the requests ahead of it to take a model, looks again.
GROUPING_POLL_S = 0.1


class EngineSettings(Protocol):
    """What the manager reads from `config.settings.Settings`."""

    @property
    def engine_dir(self) -> str | PathLike[str] | None: ...

    @property
    def parallel(self) -> int: ...

    @property
    def threads(self) -> int | None: ...

    @property
    def max_loaded_models(self) -> int: ...

    @property
    def memory_budget_mb(self) -> int: ...

    @property
    def vram_budget_mb(self) -> int: ...

    @property
    def keep_alive_sec(self) -> int: ...

    @property
    def swap_grouping(self) -> bool: ...

    @property
    def cancel_on_disconnect(self) -> bool: ...


class EngineProcess(Protocol):
    """What the manager needs of a child (`LlamaServerProcess`; tests may pass another)."""

    @property
    def base_url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def alive(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    def output_tail(self, lines: int = 20) -> str: ...

    async def start(self, timeout_s: float) -> None: ...

    async def stop(self, grace_s: float = 5.0) -> None: ...

    async def wait_exit(self, timeout_s: float | None = None) -> int | None: ...


ProcessFactory = Callable[[LaunchSpec, BackendChoice], EngineProcess]


@dataclass(eq=False)
class _Resident:
    """One resident model: its child and the bookkeeping of the residency rules."""

    key: tuple[float | None, int | None]  # (gpulayer, contextSize) it was loaded with
    process: EngineProcess
    client: EngineClient
    loaded: LoadedModel
    need: MemoryNeed
    backend: str
    pinned: bool
    keep_alive_s: float
    last_used_ms: int
    use_order: int  # increases with each use: the LRU order (wall-clock ms can tie)
    last_active_s: float  # monotonic: its last request's start or end (grouping's quiet time)
    in_flight: int = 0
    retiring: bool = False  # a reload or unload waits for it to become idle
    # Another model's load waits for it to become idle to take its room: new requests for it
    # queue (and load it again after that swap) instead of keeping it busy forever.
    yielding: bool = False
    expires_at: int | None = None
    expiry: asyncio.TimerHandle | None = None
    warm_key: str | None = None  # its saved KV cache's key (None: no warm swaps for it)

    def serves(self, key: tuple[float | None, int | None]) -> bool:
        return self.key == key and not self.retiring and not self.yielding and self.process.alive


def _number(value: float | None) -> str:
    if value is None:
        return "auto"
    return str(int(value)) if float(value).is_integer() else str(value)


class EngineHandle:
    """One request's use of the loaded child. Release it (or use `async with`) when done: a model
    replacement waits for every handle to be released."""

    def __init__(self, resident: _Resident, release: Callable[[_Resident], None]) -> None:
        self._resident = resident
        self._release = release
        self._released = False

    @property
    def model_name(self) -> str:
        return self._resident.loaded.name

    @property
    def client(self) -> EngineClient:
        return self._resident.client

    @property
    def process(self) -> EngineProcess:
        """The child serving this handle (diagnostics: pid, alive, output tail)."""
        return self._resident.process

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release(self._resident)

    async def __aenter__(self) -> EngineHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    @asynccontextmanager
    async def _explained(self) -> AsyncIterator[None]:
        """The one error wrapper of every call on the child: a lost connection is most often a
        dead child, so it becomes `EngineExitedError` with the child's exit code and last output
        (keeping `unsent`, which decides whether the request may be retried)."""
        try:
            yield
        except EngineConnectionError as error:
            process = self._resident.process
            # Also when the kernel already reports the death: the event loop may not have reaped
            # the child yet, and its exit code belongs in the message.
            if process.alive or process.returncode is None:
                await process.wait_exit(1.0)
            if process.alive:
                raise
            raise EngineExitedError(
                process.returncode, process.output_tail(10), unsent=error.unsent
            ) from error

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        async with self._explained():
            return await self.client.complete(request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionDelta]:
        async with self._explained():
            async for delta in self.client.stream(request):
                yield delta

    async def embed(self, text: str) -> list[float]:
        async with self._explained():
            return await self.client.embed(text)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: a container's --cpuset-cpus)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _unmeasured() -> int | None:
    return None


FreeMemory = Callable[[], int | None]
Key = tuple[float | None, int | None]


class EngineManager:
    """Holds the resident models; see the module docstring for the rules."""

    def __init__(
        self,
        settings: EngineSettings,
        backend: BackendChoice,
        logger: LoggerProtocol,
        process_factory: ProcessFactory | None = None,
        *,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        environ: Mapping[str, str] | None = None,
        free_memory_mb: FreeMemory = _unmeasured,
        warm: WarmStore | None = None,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._logger = logger
        self._environ = environ
        self._factory = process_factory or self._default_factory
        self._start_timeout_s = start_timeout_s
        self._clock_ms = clock_ms
        self._free_memory_mb = free_memory_mb
        self._warm = warm
        self._residents: dict[str, _Resident] = {}
        self._model_locks: dict[str, asyncio.Lock] = {}  # FIFO: loads of one model in order
        self._memory_lock = asyncio.Lock()  # one placement (evict + start) at a time
        self._released = asyncio.Event()  # a resident became idle or left: re-check the room
        self._pinned: set[str] = set()
        self._grouping = settings.swap_grouping
        self._tickets = 0
        self._pending: dict[str, dict[int, Key]] = {}  # by model: waiting requests' tickets
        self._uses = 0
        self._closed = False
        self._restarts: dict[str, int] = {}
        self._events: deque[ResidencyEvent] = deque(maxlen=EVENTS_KEPT)
        self._event_seq = 0
        self._background: set[asyncio.Task[None]] = set()
        self.loads: Counter[tuple[str, str]] = Counter()
        self.evictions: Counter[tuple[str, str]] = Counter()

    # --- what the use-cases' scheduling reads (`scheduling.ComputeTurns`) ----------------------

    def models_computing_at_once(self) -> int | None:
        """On the CPU: the cores over each child's threads (llama-server's default: every core),
        at least 1; None on a GPU backend (its children's CPU threads only feed the GPU)."""
        if self._backend.is_gpu:
            return None
        cores = usable_cores()
        return max(1, cores // (self._settings.threads or cores))

    # --- what /state and /health read ---------------------------------------------------------

    @property
    def backend(self) -> BackendChoice:
        """The backend in use (a CPU fallback after a GPU start failure shows up here)."""
        return self._backend

    def budget(self) -> Budget:
        settings = self._settings
        vram = settings.vram_budget_mb or None
        if vram is None and self._backend.is_gpu:
            free = [
                device.total_mb - (device.used_mb or 0)
                for device in self._backend.devices
                if device.total_mb
            ]
            vram = min(free) if free else None
        return Budget(
            max_loaded=max(1, settings.max_loaded_models),
            host_mb=settings.memory_budget_mb or None,
            vram_mb=vram,
        )

    def _most_recent(self) -> _Resident | None:
        residents = list(self._residents.values())
        return max(residents, key=lambda r: r.use_order) if residents else None

    def current(self) -> LoadedModel | None:
        recent = self._most_recent()
        return recent.loaded if recent else None

    def resident(self, name: str) -> LoadedModel | None:
        found = self._residents.get(name)
        return found.loaded if found is not None else None

    def loaded_models(self) -> Sequence[ResidentModel]:
        ordered = sorted(self._residents.values(), key=lambda r: r.use_order, reverse=True)
        return [
            ResidentModel(
                name=r.loaded.name,
                backend=r.backend,
                gpulayer=r.key[0],
                context_size=r.key[1],
                size_mb=r.loaded.size_mb,
                estimated_mb=r.need.total_mb,
                estimated_vram_mb=r.need.vram_mb,
                loaded_at=r.loaded.load_timestamp,
                last_used_at=r.last_used_ms,
                expires_at=r.expires_at,
                pinned=r.pinned,
                in_flight=r.in_flight,
                alive=r.process.alive,
            )
            for r in ordered
        ]

    def engine_alive(self) -> bool | None:
        """None: nothing loaded; False: a resident model's child died (restarts on next use)."""
        if not self._residents:
            return None
        return all(r.process.alive for r in self._residents.values())

    def in_use(self) -> int:
        return sum(r.in_flight for r in self._residents.values())

    def pin(self, names: Sequence[str]) -> None:
        """Model names (canonical) that are never evicted and never expire."""
        self._pinned = set(names)
        for name, resident in self._residents.items():
            resident.pinned = name in self._pinned
            if resident.pinned:
                self._cancel_expiry(resident)

    # --- what /metrics reads ------------------------------------------------------------------

    def restarts(self) -> Mapping[str, int]:
        """By model name: children found dead (exited on their own) and replaced."""
        return dict(self._restarts)

    def residency_events(self, after_seq: int) -> Sequence[ResidencyEvent]:
        return [event for event in self._events if event.seq > after_seq]

    def _record(self, kind: str, model: str, reason: str, seconds: float = 0.0) -> None:
        self._event_seq += 1
        if kind == "load":
            self.loads[(model, reason)] += 1
            self._events.append(ResidencyEvent(self._event_seq, "load", model, reason, seconds))
        else:
            self.evictions[(model, reason)] += 1
            self._events.append(ResidencyEvent(self._event_seq, "evict", model, reason))

    async def kv_caches(self) -> Sequence[KvCacheReport]:
        """Every running child's KV cache, asked together (a child that does not answer in
        time is left out)."""
        residents = [r for r in self._residents.values() if r.process.alive]
        reports = await asyncio.gather(*(r.client.kv_cache(r.loaded.name) for r in residents))
        return [report for report in reports if report is not None]

    async def kv_cache(self) -> KvCacheReport | None:
        """The most recently used child's KV cache (its ``/slots`` report); None when none runs."""
        resident = self._most_recent()
        if resident is None or not resident.process.alive:
            return None
        return await resident.client.kv_cache(resident.loaded.name)

    # --- residency ----------------------------------------------------------------------------

    def _default_factory(self, spec: LaunchSpec, choice: BackendChoice) -> EngineProcess:
        # The folder was resolved once, by the config loader (backends.layout's one rule).
        root = self._settings.engine_dir
        if root is None:
            raise EngineNotFoundError(NOT_CONFIGURED)
        return LlamaServerProcess(
            EngineLayout(Path(root)),
            spec,
            choice,
            line_sink=lambda line: self._logger.trace(ENGINE_PIPE, line),
            base_environ=self._environ,
        )

    def _lock_for(self, name: str) -> asyncio.Lock:
        lock = self._model_locks.get(name)
        if lock is None:
            lock = self._model_locks[name] = asyncio.Lock()
        return lock

    def _keep_alive(self, keep_alive_s: float | None) -> float:
        return float(self._settings.keep_alive_sec) if keep_alive_s is None else keep_alive_s

    async def acquire(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> tuple[EngineHandle, LoadStatus]:
        """A handle on a child serving `model` with these settings; release it when done."""
        key: Key = (gpulayer, context_size)
        keep = self._keep_alive(keep_alive_s)
        if self._closed:
            raise EngineError("the engine is shutting down")
        resident = self._residents.get(model.name)
        if resident is not None and resident.serves(key):
            return self._lease(resident, keep), "exists"  # no await: nothing can change it
        ticket = self._arrive(model.name, key)
        try:
            async with self._lock_for(model.name):
                resident, status = await self._ensure(model, key, keep, "request", ticket)
                return self._lease(resident, keep), status
        finally:
            self._leave(model.name, ticket)

    # --- anti-thrash grouping -----------------------------------------------------------------

    def _arrive(self, name: str, key: Key) -> int:
        """A request that must wait for its model (a load, a reload, the lock): numbered in
        arrival order, so a load knows which requests came before it."""
        self._tickets += 1
        self._pending.setdefault(name, {})[self._tickets] = key
        return self._tickets

    def _leave(self, name: str, ticket: int) -> None:
        waiting = self._pending.get(name)
        if waiting is not None:
            waiting.pop(ticket, None)
            if not waiting:
                del self._pending[name]
        self._released.set()

    def _protected(self, resident: _Resident, ticket: int) -> bool:
        """Grouping: an idle model that requests which arrived BEFORE this load are about to use
        (they wait for its lock, e.g. right after it was loaded for them) is not evicted under
        them; requests that arrived later do not protect it (the fairness bound: a load waits
        at most for the requests ahead of it)."""
        if resident.yielding or resident.retiring:
            return False
        waiting = self._pending.get(resident.loaded.name, {})
        return any(t < ticket and key == resident.key for t, key in waiting.items())

    @asynccontextmanager
    async def use(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None
    ) -> AsyncIterator[tuple[EngineHandle, LoadStatus]]:
        """`acquire` + automatic release."""
        handle, status = await self.acquire(model, gpulayer, context_size)
        try:
            yield handle, status
        finally:
            handle.release()

    async def load(
        self,
        model: ModelLike,
        gpulayer: float | None,
        context_size: int | None,
        keep_alive_s: float | None = None,
    ) -> LoadStatus:
        keep = self._keep_alive(keep_alive_s)
        self._tickets += 1
        ticket = self._tickets
        async with self._lock_for(model.name):
            resident, status = await self._ensure(
                model, (gpulayer, context_size), keep, "api", ticket
            )
            resident.keep_alive_s = keep
            self._arm_expiry(resident)
            return status

    async def unload(self, name: str) -> bool:
        async with self._lock_for(name):
            resident = self._residents.get(name)
            if resident is None:
                return False
            resident.retiring = True
            await self._wait_idle(resident)
            if self._take(resident):
                await self._stop(resident, REASON_REQUESTED)
            return True

    async def _ensure(
        self, model: ModelLike, key: Key, keep_alive_s: float, why: str, ticket: int
    ) -> tuple[_Resident, LoadStatus]:
        """Under the model's lock: the resident serving ``key``, loading it when needed."""
        if self._closed:
            raise EngineError("the engine is shutting down")
        resident = self._residents.get(model.name)
        if resident is not None and resident.yielding:
            await self._wait_swapped_out(resident)
            resident = self._residents.get(model.name)
        if resident is not None and resident.serves(key):
            return resident, "exists"  # loaded by the request ahead of this one
        config_only = False
        if resident is not None:
            resident.retiring = True  # new requests for it now wait behind this reload
            reason = REASON_RELOAD
            if resident.process.alive:
                config_only = True
            else:
                reason = REASON_CRASHED
                if resident.process.returncode is None:  # dead, not yet reaped
                    await resident.process.wait_exit(1.0)
                name = resident.loaded.name
                self._restarts[name] = self._restarts.get(name, 0) + 1
                self._logger.error(
                    APP_PIPE,
                    f'engine process for "{name}" exited unexpectedly '
                    f"(code {resident.process.returncode}); restarting it",
                    resident.process.output_tail(),
                )
                why = "restart"
            await self._wait_idle(resident)
            if self._take(resident):
                await self._stop(resident, reason)
        loaded = await self._place(model, key, keep_alive_s, config_only, why, ticket)
        return loaded, "load"

    def _lease(self, resident: _Resident, keep_alive_s: float) -> EngineHandle:
        self._uses += 1
        resident.use_order = self._uses
        resident.last_used_ms = self._clock_ms()
        resident.last_active_s = time.monotonic()
        resident.keep_alive_s = keep_alive_s
        resident.in_flight += 1
        self._cancel_expiry(resident)
        return EngineHandle(resident, self._release)

    def _release(self, resident: _Resident) -> None:
        resident.in_flight = max(0, resident.in_flight - 1)
        resident.last_active_s = time.monotonic()
        if resident.in_flight == 0:
            self._released.set()
            self._arm_expiry(resident)

    async def _wait_swapped_out(self, resident: _Resident) -> None:
        """Wait until the load that ``resident`` yields to took its room (or gave up)."""
        name = resident.loaded.name
        while resident.yielding and self._residents.get(name) is resident:
            self._released.clear()
            await self._released.wait()

    async def _wait_idle(self, resident: _Resident) -> None:
        while resident.in_flight:
            self._released.clear()
            await self._released.wait()

    # --- keep-alive ---------------------------------------------------------------------------

    def _cancel_expiry(self, resident: _Resident) -> None:
        if resident.expiry is not None:
            resident.expiry.cancel()
            resident.expiry = None
        resident.expires_at = None

    def _arm_expiry(self, resident: _Resident) -> None:
        """Once idle, unload after its keep-alive (0: now); pinned models stay."""
        self._cancel_expiry(resident)
        if resident.pinned or resident.in_flight or resident.keep_alive_s < 0 or self._closed:
            return
        delay = resident.keep_alive_s
        resident.expires_at = self._clock_ms() + round(delay * 1000)
        loop = asyncio.get_running_loop()
        resident.expiry = loop.call_later(delay, self._expire_soon, resident)

    def _expire_soon(self, resident: _Resident) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(resident))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _expire(self, resident: _Resident) -> None:
        name = resident.loaded.name
        async with self._lock_for(name):
            # In use again, reloaded or evicted meanwhile: nothing to do.
            if resident.in_flight or resident.pinned or self._residents.get(name) is not resident:
                return
            if self._take(resident):
                self._logger.debug(
                    APP_PIPE,
                    f'unload model "{name}": idle for its keepAlive of {resident.keep_alive_s:g} s',
                )
                await self._stop(resident, REASON_EXPIRED)

    # --- placement ----------------------------------------------------------------------------

    def _take(self, resident: _Resident) -> bool:
        """Remove it from the residents (once: False when another path took it already)."""
        name = resident.loaded.name
        if self._residents.get(name) is not resident:
            return False
        del self._residents[name]
        self._cancel_expiry(resident)
        self._released.set()
        return True

    async def _stop(self, resident: _Resident, reason: str) -> None:
        self._record("evict", resident.loaded.name, reason)
        if reason in WARM_SAVE_REASONS:
            await self._save_warm(resident)
        await resident.client.aclose()
        await resident.process.stop()

    # --- warm swaps ----------------------------------------------------------------------------

    def _warm_key(self, model: ModelLike, key: Key) -> str | None:
        if self._warm is None or not model.kv_restore_safe:
            return None
        return self._warm.key(model, key[1], max(1, self._settings.parallel))

    async def _save_warm(self, resident: _Resident) -> None:
        """Save the used slots' KV cache of a child about to stop (never fails the eviction)."""
        store, name = self._warm, resident.loaded.name
        if store is None or resident.warm_key is None or not resident.process.alive:
            return
        try:
            store.folder.mkdir(parents=True, exist_ok=True)
            for slot in await resident.client.used_slots():
                file_name = store.file_name(resident.warm_key, slot)
                tokens = await resident.client.slot_file(slot, "save", file_name, WARM_IO_S)
                self._logger.debug(
                    APP_PIPE, f'saved {tokens} tokens of "{name}" slot {slot} for a warm reload'
                )
            store.prune()
        except (EngineError, OSError) as error:
            self._logger.error(APP_PIPE, f'warm swap: saving "{name}" failed: {error}')

    async def _restore_warm(self, resident: _Resident) -> None:
        """Restore the saved slots into a new child (most recent first, one per slot)."""
        store, name = self._warm, resident.loaded.name
        if store is None or resident.warm_key is None:
            return
        try:
            saved = store.saved(resident.warm_key)
            for slot, file_name in enumerate(saved[: max(1, self._settings.parallel)]):
                tokens = await resident.client.slot_file(slot, "restore", file_name, WARM_IO_S)
                self._logger.debug(
                    APP_PIPE, f'restored {tokens} tokens of "{name}" into slot {slot}'
                )
        except (EngineError, OSError) as error:
            self._logger.error(APP_PIPE, f'warm swap: restoring "{name}" failed: {error}')

    def _need(self, model: ModelLike, key: Key) -> MemoryNeed:
        gpus = (len(self._backend.devices) or 1) if self._backend.is_gpu else 0
        return estimate_need(model, key[0], key[1], max(1, self._settings.parallel), gpus)

    async def _make_room(self, model: ModelLike, need: MemoryNeed, ticket: int) -> None:
        """Evict idle models (least recently used first) until ``need`` fits; wait while only
        busy models could make room; refuse when it can never fit."""
        budget = self.budget()
        alone = refusal(need, budget, None)
        if alone is not None:
            raise ModelTooLargeError(self._too_large(model, need, budget, alone))
        yielded: list[_Resident] = []
        try:
            await self._evict_until_fits(model, need, budget, yielded, ticket)
        finally:
            # Whatever is still resident (this load failed, was cancelled, or fitted without
            # it) serves its requests again.
            for resident in yielded:
                resident.yielding = False
            if yielded:
                self._released.set()

    async def _evict_until_fits(
        self,
        model: ModelLike,
        need: MemoryNeed,
        budget: Budget,
        yielded: list[_Resident],
        ticket: int,
    ) -> None:
        started = time.monotonic()
        grouping_until = started + GROUPING_BOUND_S
        while True:
            others = list(self._residents.values())
            free = self._free_memory_mb()
            lacking = shortfall(need, [r.need for r in others], budget, free)
            if lacking is None:
                return
            now = time.monotonic()
            evictable = [r for r in others if not r.pinned]
            if self._grouping and evictable and not swap_may_start(others, now, now - started):
                # The residents are serving: their requests first; this model's pile up.
                await self._poll_released()
                continue
            protected: list[_Resident] = []
            if self._grouping and time.monotonic() < grouping_until:
                protected = [r for r in others if self._protected(r, ticket)]
            victim = least_recently_used([r for r in others if r not in protected])
            if victim is not None:
                if self._take(victim):
                    self._logger.debug(
                        APP_PIPE,
                        f'unload model "{victim.loaded.name}" to make room for "{model.name}" '
                        f"({lacking})",
                    )
                    await self._stop(victim, lacking)
                continue
            if not others:
                # Nothing else is resident and it still does not fit: the memory free is short.
                why = refusal(need, budget, free) or "it does not fit the memory free"
                raise ModelTooLargeError(self._too_large(model, need, budget, why))
            if protected:
                # The requests ahead of this load are about to use those models: let them.
                await self._poll_released()
                continue
            busy = [r for r in others if not r.pinned]
            if not busy:
                pinned = ", ".join(sorted(r.loaded.name for r in others))
                raise ModelTooLargeError(
                    self._too_large(
                        model, need, budget, f"the pinned models ({pinned}) leave no room"
                    )
                )
            # Only models with requests in flight could make room: the least recently used
            # yields (its new requests wait for this swap, so it cannot stay busy forever) and
            # this load waits for it to become idle.
            successor = min(busy, key=lambda r: r.use_order)
            successor.yielding = True
            yielded.append(successor)
            self._released.clear()
            await self._released.wait()

    async def _poll_released(self) -> None:
        self._released.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), GROUPING_POLL_S)

    def _too_large(self, model: ModelLike, need: MemoryNeed, budget: Budget, why: str) -> str:
        return (
            f'model "{model.name}" cannot be loaded: {why}; {need.describe()}; limits: '
            f"{budget.describe()}. Use a smaller contextSize, a smaller model, or raise the "
            "budget"
        )

    async def _place(
        self,
        model: ModelLike,
        key: Key,
        keep_alive_s: float,
        config_only: bool,
        why: str,
        ticket: int,
    ) -> _Resident:
        need = self._need(model, key)
        async with self._memory_lock:
            if self._closed:
                raise EngineError("the engine is shutting down")
            await self._make_room(model, need, ticket)
            started = time.monotonic()
            resident = await self._load(model, key, need, config_only, keep_alive_s)
            self._record("load", model.name, why, time.monotonic() - started)
            return resident

    async def _load(
        self,
        model: ModelLike,
        key: Key,
        need: MemoryNeed,
        config_only: bool,
        keep_alive_s: float,
    ) -> _Resident:
        gpulayer, context_size = key
        size_mb = math.ceil(model.size_kb / 1024)
        suffix = " - config change only" if config_only else ""
        context_text = "default" if context_size is None else str(context_size)
        self._logger.debug(
            APP_PIPE,
            f'load model to memory "{model.name}" (size {size_mb} mb, gpulayer '
            f"{_number(gpulayer)}, contextSize {context_text}){suffix}",
        )
        now = self._clock_ms()
        loaded = LoadedModel(model.name, size_mb, now, gpulayer, context_size)
        spec = LaunchSpec(
            model_path=model.path,
            gpu_layers=gpulayer,
            context_size=context_size,
            parallel=max(1, self._settings.parallel),
            threads=self._settings.threads,
            embeddings=True,
            pooling=pooling_for(model.pooling_type),
            slot_save_path=self._warm.folder if self._warm is not None else None,
        )
        if self._warm is not None:
            self._warm.folder.mkdir(parents=True, exist_ok=True)
        process, backend = await self._start_with_fallback(spec)
        self._uses += 1
        resident = _Resident(
            key=key,
            process=process,
            client=EngineClient(process.base_url, stream_whole=self._settings.cancel_on_disconnect),
            loaded=loaded,
            need=need,
            backend=backend,
            pinned=model.name in self._pinned,
            keep_alive_s=keep_alive_s,
            last_used_ms=now,
            use_order=self._uses,
            last_active_s=time.monotonic(),
            warm_key=self._warm_key(model, key),
        )
        await self._restore_warm(resident)
        self._residents[model.name] = resident
        return resident

    async def _start_with_fallback(self, spec: LaunchSpec) -> tuple[EngineProcess, str]:
        """Start on the backend in use; when it fails, on each usable lower GPU tier, then on the
        CPU. The first that works is kept for later loads (and /state says why)."""
        current = self._backend
        try:
            return await self._start(spec, current), current.backend
        except EngineStartError as gpu_error:
            if not current.is_gpu:
                raise
            why = f"{current.backend} engine failed to start: {gpu_error.message}"
            first_error = gpu_error
        for lower in current.fallbacks:
            self._logger.error(APP_PIPE, f"{why}; retrying on {lower.backend}")
            try:
                process = await self._start(spec, lower)
            except EngineStartError as error:
                why = f"{why}; {lower.backend} engine failed to start: {error.message}"
                continue
            self._backend = current.fallback_to(lower, why)
            self._logger.error(APP_PIPE, f"engine now runs on {lower.backend} ({why})")
            return process, lower.backend
        self._logger.error(APP_PIPE, f"{why}; retrying on the CPU")
        cpu = current.fallback_to_cpu(why)
        try:
            process = await self._start(spec, cpu)
        except EngineStartError as cpu_error:
            # All failed: most likely the model, not the GPU. Stay on the GPU backend.
            raise EngineStartError(
                f"{first_error.message}; the CPU fallback failed too: {cpu_error.message}"
            ) from cpu_error
        self._backend = cpu
        self._logger.error(APP_PIPE, f"engine now runs on the CPU ({why})")
        return process, cpu.backend

    async def _start(self, spec: LaunchSpec, choice: BackendChoice) -> EngineProcess:
        process = self._factory(spec, choice)
        await process.start(self._start_timeout_s)
        return process

    async def shutdown(self) -> None:
        """Stop every child (requests still running on them fail). Idempotent."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        async with self._memory_lock:
            for resident in list(self._residents.values()):
                if self._take(resident):
                    await self._stop(resident, REASON_SHUTDOWN)
