"""Model residency: at most one llama-server child (one model) at a time.

Rules (reference §2.6, with the port's fixes):
* A request reuses the running child when the canonical model name, `gpulayer` and `contextSize`
  all equal the loaded ones ("exists"); otherwise the child is replaced ("load"). The caller
  resolves the name first (`ModelRegistry.find`), so any spelling of a name reuses the model.
* Children always serve embeddings next to completions (`--embeddings`): `/embedding` does not
  force a reload; it reuses whatever `gpulayer`/`contextSize` the model runs with.
* A replacement waits until the requests running on the old child have finished (readers and one
  writer; the FIFO lock makes later requests wait behind the reload, so none starves).
* A failed load leaves nothing loaded, and `current()` says so.
* A child that died is restarted transparently by the next `acquire`; the request that was running
  on it gets `EngineExitedError` ("engine process exited unexpectedly (code X): <output tail>").
  When the request never reached the child (connection refused: it died while idle, before the
  exit was noticed), the error says so (`unsent`) and the use-case retries it once on a fresh
  child (`inference.slots.run_on_engine`).
  Each such restart is counted by model (`restarts`, the metric ``mentator_engine_restarts_total``).
* On a GPU backend, a child that fails to start is retried once on the CPU; when that works the
  manager stays on the CPU and the backend choice records why (shown by /state).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
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
)
from mentator.engine.ports import (
    CompletionDelta,
    CompletionRequest,
    CompletionResult,
    KvCacheReport,
    LoadedModel,
    LoadStatus,
    ModelLike,
)
from mentator.engine.process import LaunchSpec, LlamaServerProcess, pooling_for
from mentator.logging_protocol import LoggerProtocol

APP_PIPE = "APP"
ENGINE_PIPE = "ENGINE"
DEFAULT_START_TIMEOUT_S = 600.0  # a large model from a slow disk takes minutes


class EngineSettings(Protocol):
    """What the manager reads from `config.settings.Settings`."""

    @property
    def engine_dir(self) -> str | PathLike[str] | None: ...

    @property
    def parallel(self) -> int: ...

    @property
    def threads(self) -> int | None: ...


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


@dataclass
class _Resident:
    key: tuple[str, float | None, int | None]
    process: EngineProcess
    client: EngineClient
    loaded: LoadedModel


def _number(value: float | None) -> str:
    if value is None:
        return "auto"
    return str(int(value)) if float(value).is_integer() else str(value)


class EngineHandle:
    """One request's use of the loaded child. Release it (or use `async with`) when done: a model
    replacement waits for every handle to be released."""

    def __init__(self, resident: _Resident, release: Callable[[], None]) -> None:
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
            self._release()

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


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class EngineManager:
    """Holds at most one loaded model; see the module docstring for the rules."""

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
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._logger = logger
        self._environ = environ
        self._factory = process_factory or self._default_factory
        self._start_timeout_s = start_timeout_s
        self._clock_ms = clock_ms
        self._lock = asyncio.Lock()  # FIFO: acquisitions (and reloads) in arrival order
        self._resident: _Resident | None = None
        self._in_use = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._restarts: dict[str, int] = {}

    # --- what /state and /health read ---------------------------------------------------------

    @property
    def backend(self) -> BackendChoice:
        """The backend in use (a CPU fallback after a GPU start failure shows up here)."""
        return self._backend

    def current(self) -> LoadedModel | None:
        return self._resident.loaded if self._resident else None

    def engine_alive(self) -> bool | None:
        """None: nothing loaded; False: the loaded model's child died (restarts on next use)."""
        return self._resident.process.alive if self._resident else None

    def in_use(self) -> int:
        return self._in_use

    # --- what /metrics reads ------------------------------------------------------------------

    def restarts(self) -> Mapping[str, int]:
        """By model name: children found dead (exited on their own) and replaced."""
        return dict(self._restarts)

    async def kv_cache(self) -> KvCacheReport | None:
        """The running child's KV cache (its ``/slots`` report); None when none runs."""
        resident = self._resident
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

    async def acquire(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None
    ) -> tuple[EngineHandle, LoadStatus]:
        """A handle on a child serving `model` with these settings; release it when done."""
        key = (model.name, gpulayer, context_size)
        async with self._lock:
            if self._closed:
                raise EngineError("the engine is shutting down")
            resident = self._resident
            if resident is not None and resident.key == key and resident.process.alive:
                return self._lease(resident), "exists"
            await self._wait_idle()
            config_only = False
            if resident is not None:
                if resident.process.alive:
                    config_only = resident.key[0] == model.name
                else:
                    if resident.process.returncode is None:  # dead, not yet reaped
                        await resident.process.wait_exit(1.0)
                    name = resident.loaded.name
                    self._restarts[name] = self._restarts.get(name, 0) + 1
                    self._logger.error(
                        APP_PIPE,
                        f'engine process for "{resident.loaded.name}" exited unexpectedly '
                        f"(code {resident.process.returncode}); restarting it",
                        resident.process.output_tail(),
                    )
                await self._unload()
            resident = await self._load(model, gpulayer, context_size, config_only)
            return self._lease(resident), "load"

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

    def _lease(self, resident: _Resident) -> EngineHandle:
        self._in_use += 1
        self._idle.clear()
        return EngineHandle(resident, self._release)

    def _release(self) -> None:
        self._in_use -= 1
        if self._in_use <= 0:
            self._in_use = 0
            self._idle.set()

    async def _wait_idle(self) -> None:
        while self._in_use:
            await self._idle.wait()

    async def _unload(self) -> None:
        resident, self._resident = self._resident, None
        if resident is not None:
            await resident.client.aclose()
            await resident.process.stop()

    async def _load(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None, config_only: bool
    ) -> _Resident:
        size_mb = math.ceil(model.size_kb / 1024)
        suffix = " - config change only" if config_only else ""
        context_text = "default" if context_size is None else str(context_size)
        self._logger.debug(
            APP_PIPE,
            f'load model to memory "{model.name}" (size {size_mb} mb, gpulayer '
            f"{_number(gpulayer)}, contextSize {context_text}){suffix}",
        )
        loaded = LoadedModel(model.name, size_mb, self._clock_ms(), gpulayer, context_size)
        spec = LaunchSpec(
            model_path=model.path,
            gpu_layers=gpulayer,
            context_size=context_size,
            parallel=max(1, self._settings.parallel),
            threads=self._settings.threads,
            embeddings=True,
            pooling=pooling_for(model.pooling_type),
        )
        process = await self._start_with_fallback(spec)
        resident = _Resident(
            (model.name, gpulayer, context_size), process, EngineClient(process.base_url), loaded
        )
        self._resident = resident
        return resident

    async def _start_with_fallback(self, spec: LaunchSpec) -> EngineProcess:
        """Start on the backend in use; when it fails, on each usable lower GPU tier, then on the
        CPU. The first that works is kept for later loads (and /state says why)."""
        current = self._backend
        try:
            return await self._start(spec, current)
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
            return process
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
        return process

    async def _start(self, spec: LaunchSpec, choice: BackendChoice) -> EngineProcess:
        process = self._factory(spec, choice)
        await process.start(self._start_timeout_s)
        return process

    async def shutdown(self) -> None:
        """Stop the child (requests still running on it fail). Idempotent."""
        async with self._lock:
            self._closed = True
            await self._unload()
