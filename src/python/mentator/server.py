"""The composition root: build the service's parts, start and stop them, run the HTTP server.

Startup follows reference §1.4, adapted to the child-process engine:
1. open the database (a failure is logged and the service runs without it — the logger then
   writes to the console only, log routes answer 500, and /health says "degraded");
2. the logger: ``DB init db in "<file>"``, ``APP START``; retention runs now and hourly;
3. the HTTP server starts listening (``LISTEN http://127.0.0.1:<port>/``) while, in the
   background, the first model scan and the backend decision (CUDA → ROCm → Vulkan → CPU, each
   skipped tier logged with its reason; taken from the container's entrypoint when it already
   decided, `hardware.handoff`) run; until both are done /health answers "starting" and
   completion routes answer 503;
4. every 60 s: a rescan of the model folder and the memory heartbeat line.
SIGTERM/SIGINT: ``FINISH``, the server stops, the engine child is stopped, the database closed,
exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from mentator.api.app import create_app
from mentator.applog import AppLogger
from mentator.backends.choice import BackendChoice
from mentator.config.settings import Settings
from mentator.context import ServiceContext
from mentator.engine.manager import EngineManager
from mentator.engine.ports import EngineManagerPort
from mentator.hardware.handoff import decided_backend
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend
from mentator.logging_protocol import LoggerProtocol
from mentator.memory import memory_usage
from mentator.models.registry import ModelRegistry
from mentator.scheduling import RequestQueue
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import DB_PIPE, Database, StorageError
from mentator.storage.health import StorageHealth
from mentator.storage.retention import RETENTION_INTERVAL_S, Retention
from mentator.tools.registry import ToolRegistry

APP_PIPE = "APP"
HEARTBEAT_INTERVAL_S = 60.0
MODEL_SCAN_INTERVAL_S = 60.0
DB_RETRY_INTERVAL_S = 10.0

EngineFactory = Callable[[Settings, BackendChoice, LoggerProtocol], EngineManagerPort]


def build_services(
    settings: Settings,
    *,
    stream_out: Any = None,
    stream_err: Any = None,
) -> ServiceContext:
    """Open the database and create the logger, registry and queue (no scan, no probing yet).

    Call `initialize_services` (blocking) afterwards to scan models and select the backend.
    """
    health = StorageHealth()
    database: Database | None = None
    corelog: CoreLogStore | None = None
    chatlog: ChatLogStore | None = None
    try:
        database = Database(settings.db_file, health)
        corelog = CoreLogStore(database)
        chatlog = ChatLogStore(database)
    except StorageError as error:
        health.unavailable(str(error))
    logger = AppLogger(
        corelog, settings.log.level, stream_out or sys.stdout, stream_err or sys.stderr
    )
    if database is not None:
        logger.debug(DB_PIPE, f'init db in "{settings.db_file}"')
    else:
        logger.error(
            DB_PIPE, f"database unavailable, logging to the console only: {health.open_error}"
        )
    return ServiceContext(
        settings=settings,
        logger=logger,
        registry=ModelRegistry(settings.model_dir, logger, MODEL_SCAN_INTERVAL_S),
        queue=RequestQueue(max(1, settings.parallel), max(0, settings.queue_limit)),
        health=health,
        database=database,
        corelog=corelog,
        chatlog=chatlog,
        tools=ToolRegistry(settings.tool_dir, settings.tool_env_dir, logger, MODEL_SCAN_INTERVAL_S),
    )


def reopen_database(context: ServiceContext) -> bool:
    """Retry opening a database that could not be opened at start (a volume mounted late, a
    permission fixed): on success the logs, chat log and /health use it from now on."""
    if context.database is not None:
        return True
    try:
        database = Database(context.settings.db_file, context.health)
    except StorageError as error:
        context.health.unavailable(str(error))
        return False
    context.corelog = CoreLogStore(database)
    context.chatlog = ChatLogStore(database)
    context.database = database
    context.health.opened()
    context.logger.attach_store(context.corelog)
    context.logger.debug(DB_PIPE, f'init db in "{context.settings.db_file}" (after a retry)')
    return True


def log_backend_choice(logger: LoggerProtocol, choice: BackendChoice, source: str = "") -> None:
    """One line for the choice, one per skipped tier with its reason."""
    for tier, why in choice.skipped.items():
        logger.debug(APP_PIPE, f"backend {tier} skipped: {why}")
    devices = ", ".join(device.name for device in choice.devices) or "none"
    variant = f", cpu variant {choice.cpu_variant}" if choice.cpu_variant else ""
    logger.debug(
        APP_PIPE,
        f"backend {choice.backend} selected{source}: {choice.reason}"
        f" (devices: {devices}{variant})",
    )


def initialize_services(
    context: ServiceContext,
    *,
    probe_env: ProbeEnv | None = None,
    engine_factory: EngineFactory | None = None,
) -> None:
    """First model scan and backend decision, then the engine manager (blocking; run it in a
    thread from async code). After it, `context.ready` is True."""
    context.registry.rescan()
    choice = decided_backend(os.environ) if probe_env is None else None
    if choice is not None:
        log_backend_choice(context.logger, choice, " (decided by the container's entrypoint)")
    else:
        env = probe_env or ProbeEnv.from_environ(os.environ, engine_dir=context.settings.engine_dir)
        choice = select_backend(env)
        log_backend_choice(context.logger, choice)
    context.backend = choice
    factory = engine_factory or _default_engine
    context.engine = factory(context.settings, choice, context.logger)


def _default_engine(
    settings: Settings, choice: BackendChoice, logger: LoggerProtocol
) -> EngineManagerPort:
    return EngineManager(settings, choice, logger)


# --- the running service ---------------------------------------------------------------------


async def _every(
    name: str,
    interval_s: float,
    stop: asyncio.Event,
    action: Callable[[], object],
    logger: LoggerProtocol,
    *,
    now: bool,
) -> None:
    """Run ``action`` (in a thread: it may touch the disk) every ``interval_s`` until ``stop``.

    A run that raises is logged (``APP`` error naming the job, with the traceback) and the job
    goes on: one bad run must not end the heartbeat or the retention for the process's life.
    """
    if not now:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    while not stop.is_set():
        try:
            await asyncio.to_thread(action)
        except Exception as error:
            with contextlib.suppress(Exception):  # a failing logger must not end the job either
                logger.error(
                    APP_PIPE,
                    f"periodic job {name} failed: {type(error).__name__}: {error}",
                    "".join(traceback.format_exception(error)),
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def _heartbeat(context: ServiceContext) -> None:
    memory = memory_usage()
    context.logger.debug(
        APP_PIPE,
        f"memory (rss) {memory.rss_mb} mb; memory (heap) {memory.heap_mb} mb; "
        f"memory (external) {memory.external_mb} mb; queue size {context.queue.waiting()}",
    )


async def _startup(
    context: ServiceContext, stop: asyncio.Event, initialize: Callable[[ServiceContext], None]
) -> None:
    """Background part of the startup (the server already listens), then the periodic rescan."""
    try:
        await asyncio.to_thread(initialize, context)
    except Exception as error:
        # Recorded for /health ("failed" + reason): never a silent "starting" forever.
        context.startup_error = f"startup failed: {type(error).__name__}: {error}"
        context.logger.error(APP_PIPE, context.startup_error)
        return
    await context.registry.run_periodic(stop, scan_first=False)


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
    context: ServiceContext,
    *,
    initialize: Callable[[ServiceContext], None] = initialize_services,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the HTTP server and the background jobs until SIGTERM/SIGINT (or ``stop`` is set).

    Returns 0 after a clean stop, 1 when the server could not start (e.g. the port is taken).
    """
    settings = context.settings
    config = uvicorn.Config(
        create_app(context),
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
        context.logger.debug(APP_PIPE, "FINISH")
        server.should_exit = True

    def retention() -> None:
        # Built per run: the stores appear later when the database opened only on a retry.
        Retention(
            context.corelog,
            context.chatlog,
            settings.log.live_day,
            context.logger,
            context.clock_ms,
        ).run()

    def periodic(
        name: str, interval_s: float, action: Callable[[], object], *, now: bool
    ) -> asyncio.Task[None]:
        job = _every(name, interval_s, stop, action, context.logger, now=now)
        return asyncio.create_task(job, name=name)

    jobs = [
        asyncio.create_task(_startup(context, stop, initialize), name="startup"),
        periodic("retention", RETENTION_INTERVAL_S, retention, now=True),
        periodic("heartbeat", HEARTBEAT_INTERVAL_S, lambda: _heartbeat(context), now=False),
        periodic(
            "database retry", DB_RETRY_INTERVAL_S, lambda: reopen_database(context), now=False
        ),
    ]
    if context.tools is not None:
        # Tools and tool environments: scanned at once, then on the models' cadence.
        jobs.append(asyncio.create_task(context.tools.run_periodic(stop), name="tools"))
    server_task = asyncio.create_task(_run_server(server), name="http")
    started = await _wait_started(server, server_task)
    if started:
        context.logger.debug(APP_PIPE, f"LISTEN http://127.0.0.1:{settings.port}/")
        jobs.append(asyncio.create_task(stop_server(), name="stop"))
    else:
        context.logger.error(APP_PIPE, f"cannot listen on {settings.host}:{settings.port}")
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
        if context.engine is not None:
            await context.engine.shutdown()
    return 0 if started else 1


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def exposure_warning(settings: Settings) -> str | None:
    """The start-up warning for a service reachable beyond this machine without any API key."""
    if settings.api_keys or settings.host in LOOPBACK_HOSTS or settings.host.startswith("127."):
        return None
    return (
        f"listening on {settings.host} without an API key: anyone who can reach port"
        f" {settings.port} can use and read everything; set apiKeys in the config or"
        " MENTATOR_API_KEYS (docs/security.md)"
    )


def run_service(settings: Settings) -> int:
    """Start the service with ``settings``; returns the process exit code (0 after a signal)."""
    context = build_services(settings)
    for warning in settings.warnings:
        context.logger.debug(APP_PIPE, f"config: {warning}")
    exposed = exposure_warning(settings)
    if exposed is not None:
        context.logger.error(APP_PIPE, f"WARNING: {exposed}")
    if settings.api_keys:
        # How many, never which.
        context.logger.debug(APP_PIPE, f"API keys required ({len(settings.api_keys)} configured)")
    context.logger.debug(APP_PIPE, "START")
    try:
        code = asyncio.run(serve(context))
    finally:
        if context.database is not None:
            context.database.close()
    return code
