"""The service: its parts wired together (`Services`) and its life (`run_service`).

Startup follows reference §1.4, adapted to the child-process engine:
1. open the database (a failure is logged and the service runs without it — the logger then
   writes to the console only, log routes answer 500, and /health says "degraded");
2. the logger: ``DB init db in "<file>"``, ``APP START``; retention runs now and hourly;
3. the HTTP server starts listening (``LISTEN http://127.0.0.1:<port>/``) while, in the
   background, the first model scan and the backend selection (CUDA → ROCm → Vulkan → CPU, each
   skipped tier logged with its reason) run; until both are done /health answers "starting" and
   completion routes answer 503;
4. every 60 s: a rescan of the model folder and the memory heartbeat line.
SIGTERM/SIGINT: ``FINISH``, the server stops, the engine child is stopped, the database closed,
exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import uvicorn

from mentator.applog import RETENTION_INTERVAL_S, AppLogger, wall_clock_ms
from mentator.config.settings import Settings
from mentator.engine.client import CompletionDelta, CompletionResult, Message
from mentator.engine.manager import EngineManager, LoadedModel, ModelLike
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import BackendChoice, select_backend
from mentator.logging_protocol import LoggerProtocol
from mentator.models.registry import ModelRegistry
from mentator.scheduling import RequestQueue
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database, StorageError

LoadStatus = Literal["load", "exists"]
APP_PIPE = "APP"
DB_PIPE = "DB"
HEARTBEAT_INTERVAL_S = 60.0
MODEL_SCAN_INTERVAL_S = 60.0


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

    async def embed(self, text: str) -> list[float]: ...

    def release(self) -> None: ...


class EngineManagerPort(Protocol):
    """What the API needs of `engine.manager.EngineManager` (tests inject a fake)."""

    @property
    def backend(self) -> BackendChoice: ...

    def current(self) -> LoadedModel | None: ...

    def engine_alive(self) -> bool | None: ...

    async def acquire(
        self, model: ModelLike, gpulayer: float | None, context_size: int | None
    ) -> tuple[EngineHandlePort, LoadStatus]: ...

    async def shutdown(self) -> None: ...


@dataclass
class HealthFacts:
    """Facts /health needs that no single component owns. Thread-safe enough: single writes."""

    last_db_failure_ms: int | None = None
    last_db_failure: str | None = None

    def db_failed(self, message: str, now_ms: int) -> None:
        self.last_db_failure_ms = now_ms
        self.last_db_failure = message

    def db_succeeded(self) -> None:
        self.last_db_failure_ms = None
        self.last_db_failure = None


@dataclass
class Services:
    """Everything the HTTP layer uses, created once per process (or per test).

    ``engine`` and ``backend`` are None until `initialize_services` ran (the service is then
    "starting"); ``database``/``corelog``/``chatlog`` are None when the database could not be
    opened.
    """

    settings: Settings
    logger: AppLogger | LoggerProtocol
    registry: ModelRegistry
    queue: RequestQueue
    database: Database | None = None
    corelog: CoreLogStore | None = None
    chatlog: ChatLogStore | None = None
    backend: BackendChoice | None = None
    engine: EngineManagerPort | None = None
    started_ms: int = field(default_factory=wall_clock_ms)
    health: HealthFacts = field(default_factory=HealthFacts)
    clock_ms: Callable[[], int] = wall_clock_ms
    db_error: str | None = None

    @property
    def ready(self) -> bool:
        """The first model scan is done and the engine manager exists."""
        return self.engine is not None and self.registry.scanned

    def current_backend(self) -> BackendChoice | None:
        """The backend in use: the engine's (it may have fallen back to the CPU), else the
        selection's."""
        return self.engine.backend if self.engine is not None else self.backend


def build_services(
    settings: Settings,
    *,
    stream_out: Any = None,
    stream_err: Any = None,
) -> Services:
    """Open the database and create the logger, registry and queue (no scan, no probing yet).

    Call `initialize_services` (blocking) afterwards to scan models and select the backend.
    """
    database: Database | None = None
    corelog: CoreLogStore | None = None
    chatlog: ChatLogStore | None = None
    db_error: str | None = None
    try:
        database = Database(settings.db_file)
        corelog = CoreLogStore(database)
        chatlog = ChatLogStore(database)
    except StorageError as error:
        db_error = str(error)
    logger = AppLogger(
        corelog,
        settings.log.level,
        stream_out or sys.stdout,
        stream_err or sys.stderr,
        chat_store=chatlog,
        live_day=settings.log.live_day,
    )
    if database is not None:
        logger.debug(DB_PIPE, f'init db in "{settings.db_file}"')
    else:
        logger.error(DB_PIPE, f"database unavailable, logging to the console only: {db_error}")
    registry = ModelRegistry(settings.model_dir, logger, MODEL_SCAN_INTERVAL_S)
    queue = RequestQueue(max(1, settings.parallel), max(0, settings.queue_limit))
    services = Services(
        settings=settings,
        logger=logger,
        registry=registry,
        queue=queue,
        database=database,
        corelog=corelog,
        chatlog=chatlog,
        db_error=db_error,
    )
    if db_error is not None:
        services.health.db_failed(db_error, services.clock_ms())
    return services


def log_backend_choice(logger: LoggerProtocol, choice: BackendChoice) -> None:
    """One line for the choice, one per skipped tier with its reason."""
    for tier, why in choice.skipped.items():
        logger.debug(APP_PIPE, f"backend {tier} skipped: {why}")
    devices = ", ".join(device.name for device in choice.devices) or "none"
    variant = f", cpu variant {choice.cpu_variant}" if choice.cpu_variant else ""
    logger.debug(
        APP_PIPE,
        f"backend {choice.backend} selected: {choice.reason} (devices: {devices}{variant})",
    )


def initialize_services(
    services: Services,
    *,
    probe_env: ProbeEnv | None = None,
    engine_factory: Callable[[Settings, BackendChoice, LoggerProtocol], EngineManagerPort]
    | None = None,
) -> None:
    """First model scan and backend selection, then the engine manager (blocking; run it in a
    thread from async code). After it, `services.ready` is True."""
    services.registry.rescan()
    env = probe_env or ProbeEnv.from_environ(os.environ, engine_dir=services.settings.engine_dir)
    choice = select_backend(env)
    log_backend_choice(services.logger, choice)
    services.backend = choice
    factory = engine_factory or _default_engine
    services.engine = factory(services.settings, choice, services.logger)


def _default_engine(
    settings: Settings, choice: BackendChoice, logger: LoggerProtocol
) -> EngineManagerPort:
    return EngineManager(settings, choice, logger)


# --- memory ----------------------------------------------------------------------------------


def _status_kb(field_name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (Linux), e.g. VmRSS; None when unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _children_rss_kb() -> int:
    """RSS of this process's direct children (the llama-server engine), summed."""
    total = 0
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children", encoding="ascii") as handle:
            children = handle.read().split()
    except OSError:
        return 0
    for child in children:
        total += _status_kb("VmRSS", child) or 0
    return total


@dataclass(frozen=True)
class MemoryUsage:
    """The /state memory fields, in MB (ceil), mapped onto a Python service + engine child.

    ``rss``: this process's resident memory (the original: Node's RSS); ``heap``: its anonymous
    memory, i.e. Python objects (the original: the JS heap); ``external``: the engine child's
    resident memory, where the model lives (the original: memory outside the JS heap, which held
    the model).
    """

    rss_mb: int
    heap_mb: int
    external_mb: int


def memory_usage() -> MemoryUsage:
    rss_kb = _status_kb("VmRSS")
    if rss_kb is None:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    heap_kb = _status_kb("RssAnon") or rss_kb
    return MemoryUsage(
        rss_mb=math.ceil(rss_kb / 1024),
        heap_mb=math.ceil(heap_kb / 1024),
        external_mb=math.ceil(_children_rss_kb() / 1024),
    )


# --- the running service ---------------------------------------------------------------------


async def _every(
    interval_s: float, stop: asyncio.Event, action: Callable[[], None], *, now: bool
) -> None:
    """Run ``action`` (in a thread: it may touch the disk) every ``interval_s`` until ``stop``."""
    if not now:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    while not stop.is_set():
        await asyncio.to_thread(action)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def _heartbeat(services: Services) -> None:
    memory = memory_usage()
    services.logger.debug(
        APP_PIPE,
        f"memory (rss) {memory.rss_mb} mb; memory (heap) {memory.heap_mb} mb; "
        f"memory (external) {memory.external_mb} mb; queue size {services.queue.waiting()}",
    )


def _retention(services: Services) -> None:
    if isinstance(services.logger, AppLogger):
        services.logger.run_retention()


async def _startup(
    services: Services, stop: asyncio.Event, initialize: Callable[[Services], None]
) -> None:
    """Background part of the startup (the server already listens), then the periodic rescan."""
    try:
        await asyncio.to_thread(initialize, services)
    except Exception as error:
        services.logger.error(APP_PIPE, f"startup failed: {error}")
        return
    await services.registry.run_periodic(stop, scan_first=False)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal capture: uvicorn re-raises a captured signal after
    shutdown, which would end the process before the engine child is stopped and the database
    closed. `serve` installs its own handlers instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run_server(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot start (e.g. the port is taken); a SystemExit
        # escaping a task would stop the event loop before the cleanup below ran.
        return


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    # uvicorn offers no "started" event; a short poll costs nothing next to a server start.
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    return bool(server.started)


async def serve(
    services: Services,
    *,
    initialize: Callable[[Services], None] = initialize_services,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the HTTP server and the background jobs until SIGTERM/SIGINT (or ``stop`` is set).

    Returns 0 after a clean stop, 1 when the server could not start (e.g. the port is taken).
    """
    from mentator.api.app import create_app  # the HTTP layer imports this module

    settings = services.settings
    config = uvicorn.Config(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)

    async def stop_server() -> None:
        await stop.wait()
        services.logger.debug(APP_PIPE, "FINISH")
        server.should_exit = True

    jobs = [
        asyncio.create_task(_startup(services, stop, initialize), name="startup"),
        asyncio.create_task(
            _every(RETENTION_INTERVAL_S, stop, lambda: _retention(services), now=True)
        ),
        asyncio.create_task(
            _every(HEARTBEAT_INTERVAL_S, stop, lambda: _heartbeat(services), now=False)
        ),
    ]
    server_task = asyncio.create_task(_run_server(server), name="http")
    started = await _wait_started(server, server_task)
    if started:
        services.logger.debug(APP_PIPE, f"LISTEN http://127.0.0.1:{settings.port}/")
        jobs.append(asyncio.create_task(stop_server(), name="stop"))
    else:
        services.logger.error(APP_PIPE, f"cannot listen on {settings.host}:{settings.port}")
    try:
        await server_task
    finally:
        stop.set()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        if services.engine is not None:
            await services.engine.shutdown()
    return 0 if started else 1


def run_service(settings: Settings) -> int:
    """Start the service with ``settings``; returns the process exit code (0 after a signal)."""
    services = build_services(settings)
    for warning in settings.warnings:
        services.logger.debug(APP_PIPE, f"config: {warning}")
    services.logger.debug(APP_PIPE, "START")
    try:
        code = asyncio.run(serve(services))
    finally:
        if services.database is not None:
            services.database.close()
    return code


__all__ = [
    "EngineHandlePort",
    "EngineManagerPort",
    "HealthFacts",
    "MemoryUsage",
    "Services",
    "build_services",
    "initialize_services",
    "memory_usage",
    "run_service",
    "serve",
]
