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

SIGTERM/SIGINT: the drain (`drain_then_stop`), in this order, so that a load balancer sees the
instance go unready while it still accepts connections:
1. at once, ``DRAIN ...``: /health answers 503 ``draining``, new inference requests get 503 with
   ``Retry-After`` (`inference.drain`); the port stays open and everything else answers;
2. the requests in flight (waiting for a slot or generating, streams included) finish, for at
   most ``drainGraceMsec``; the drain also lasts at least ``drainNoticeMsec`` (capped by the grace)
   so a health check sees "draining" before the port closes;
3. when the grace ends first, what still runs is cut off with a 503 / an error event and logged;
4. ``FINISH``: uvicorn stops listening, closes idle connections and waits briefly for the last
   answers to leave; the engine child is stopped, the database closed, exit code 0.
A second SIGTERM/SIGINT during the drain ends the grace at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI

from mentator.api.activity import SAMPLE_INTERVAL_S
from mentator.api.app import create_app
from mentator.api.metrics import ApiMetrics
from mentator.applog import AppLogger
from mentator.backends.canary import CACHE_FILE_NAME
from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.config.settings import Settings
from mentator.context import ServiceContext
from mentator.engine.canary import calibrate, canary_model
from mentator.engine.errors import EngineError
from mentator.engine.manager import EngineManager
from mentator.engine.ports import EngineManagerPort
from mentator.engine.warm import WarmStore
from mentator.hardware.handoff import decided_backend
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend
from mentator.logging_protocol import LoggerProtocol
from mentator.memory import available_memory_mb, memory_usage
from mentator.models.registry import ModelRegistry
from mentator.replay.runner import ReplayOptions, Target
from mentator.replay.shadow import Shadow
from mentator.scheduling import RequestQueue
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import DB_PIPE, Database, StorageError
from mentator.storage.health import StorageHealth
from mentator.storage.retention import RETENTION_INTERVAL_S, Retention
from mentator.storage.shadowlog import ShadowLogStore
from mentator.tools.registry import ToolRegistry
from mentator.version import VERSION

APP_PIPE = "APP"
# After the drain: how long the requests cut off by the end of the grace get to send their error,
# then how long uvicorn waits for the last answers to leave before it closes their connections.
DRAIN_ABORT_WAIT_S = 2.0
SERVER_CLOSE_WAIT_S = 3
DRAIN_POLL_S = 0.05
HEARTBEAT_INTERVAL_S = 60.0
MODEL_SCAN_INTERVAL_S = 60.0
DB_RETRY_INTERVAL_S = 10.0

EngineFactory = Callable[[Settings, BackendChoice, LoggerProtocol], EngineManagerPort]


WARM_FOLDER = "kv-cache"  # beside the database: the data folder
# Mesa's Vulkan drivers (lavapipe, RADV, ANV) keep compiled shaders on disk, by default under the
# user's home, which the image's service user cannot write: every start compiled every shader
# again. Beside the database they survive restarts (measured on lavapipe, README "How the backend
# is chosen": the Vulkan engine's start 6.7 s → 1.4 s). Mesa caps its size itself (1 GB).
SHADER_CACHE_FOLDER = "shader-cache"
SHADER_CACHE_ENV = "MESA_SHADER_CACHE_DIR"


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
    context = ServiceContext(
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
    context.shadow = build_shadow(context)
    return context


def build_shadow(context: ServiceContext) -> Shadow | None:
    """Shadow traffic when ``shadowUrl`` is set (the loader checked the URL)."""
    settings = context.settings
    if settings.shadow_url is None:
        return None
    context.logger.debug(
        APP_PIPE,
        f"shadow: {settings.shadow_percent} % of completions copied to {settings.shadow_url}",
    )
    return Shadow(
        ReplayOptions(Target.parse(settings.shadow_url), api_key=settings.shadow_api_key),
        percent=settings.shadow_percent,
        queue_size=settings.shadow_queue,
        # Read at each comparison: a database opened only on a retry is used from then on.
        store=lambda: ShadowLogStore(context.database) if context.database is not None else None,
        logger=context.logger,
        clock_ms=context.clock_ms,
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
    choice = check_backends(context, choice)
    context.backend = choice
    factory = engine_factory or _default_engine
    context.engine = factory(context.settings, choice, context.logger)


def check_backends(context: ServiceContext, choice: BackendChoice) -> BackendChoice:
    """The start-up canary over detection's choice (`engine.canary.calibrate`): cached in the
    data folder by fingerprint, so only the first start (or a changed machine, driver, engine or
    image) pays for it. Every tier's numbers and the reason are logged."""
    settings = context.settings
    models = context.registry.models()
    model = canary_model([info.path for info in models], os.environ)
    name = next((info.name for info in models if info.path == model), None)
    forced = settings.backend if settings.backend != "auto" else None
    checked = asyncio.run(
        calibrate(
            choice,
            layout=EngineLayout(settings.engine_dir or Path()),
            model=model,
            model_name=name or (model.stem if model is not None else None),
            cache_file=settings.db_file.parent / CACHE_FILE_NAME,
            version=VERSION,
            forced=forced,
            threads=settings.threads,
            line_sink=lambda tier, line: _canary_line(context.logger, tier, line),
        )
    )
    report = checked.canary
    if report is not None:
        for line in report.lines():
            context.logger.debug(APP_PIPE, line)
        if report.warning:
            context.logger.error(APP_PIPE, f"backend: {report.warning}")
    if checked.backend != choice.backend:
        log_backend_choice(context.logger, checked, " by the canary")
    return checked


# Engine lines of the canary shown at debug level (the rest at trace): where the layers went, the
# devices, and errors.
_CANARY_DEBUG_WORDS = ("offloaded", "model buffer size", "using device", "error", "failed")


def _canary_line(logger: LoggerProtocol, tier: str, line: str) -> None:
    shown = any(word in line.lower() for word in _CANARY_DEBUG_WORDS)
    (logger.debug if shown else logger.trace)(APP_PIPE, f"canary {tier}: {line}")


def _default_engine(
    settings: Settings, choice: BackendChoice, logger: LoggerProtocol
) -> EngineManagerPort:
    return EngineManager(
        settings, choice, logger, free_memory_mb=available_memory_mb, warm=warm_store(settings)
    )


def warm_store(settings: Settings) -> WarmStore | None:
    """Where warm swaps keep the saved KV cache (``warmSwapMb``; None: off)."""
    if settings.warm_swap_mb <= 0:
        return None
    return WarmStore(settings.db_file.parent / WARM_FOLDER, settings.warm_swap_mb)


async def load_pinned(context: ServiceContext) -> None:
    """Load the ``pinnedModels`` (once the engine exists); a name no model has, or a model that
    cannot load, is logged and skipped: the service still serves the others."""
    engine = context.engine
    names = context.settings.pinned_models
    if engine is None or not names:
        return
    found = []
    for name in names:
        model = context.registry.find(name)
        if model is None:
            context.logger.error(APP_PIPE, f'pinnedModels: no model named "{name}" was found')
        else:
            found.append(model)
    engine.pin([model.name for model in found])
    for model in found:
        try:
            await engine.load(model, None, None)
        except EngineError as error:
            context.logger.error(
                APP_PIPE, f'pinnedModels: "{model.name}" could not be loaded: {error.message}'
            )


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


def _sample_queue(app: FastAPI, context: ServiceContext) -> None:
    metrics: ApiMetrics = app.state.metrics
    metrics.activity.sample(context.queue.waiting(), context.queue.running())


def _heartbeat(context: ServiceContext) -> None:
    memory = memory_usage()
    context.logger.debug(
        APP_PIPE,
        f"memory (rss) {memory.rss_mb} mb; memory (heap) {memory.heap_mb} mb; "
        f"memory (external) {memory.external_mb} mb; queue size {context.queue.waiting()}",
    )


def keep_shader_cache(settings: Settings, environ: MutableMapping[str, str]) -> None:
    """Engine children (the canary's and the models') find the shader cache in the data folder,
    unless ``MESA_SHADER_CACHE_DIR`` is set already (then it is the operator's choice)."""
    environ.setdefault(SHADER_CACHE_ENV, str(settings.db_file.parent / SHADER_CACHE_FOLDER))


async def _startup(
    context: ServiceContext, stop: asyncio.Event, initialize: Callable[[ServiceContext], None]
) -> None:
    """Background part of the startup (the server already listens), then the periodic rescan."""
    keep_shader_cache(context.settings, os.environ)
    try:
        await asyncio.to_thread(initialize, context)
    except Exception as error:
        # Recorded for /health ("failed" + reason): never a silent "starting" forever.
        context.startup_error = f"startup failed: {type(error).__name__}: {error}"
        context.logger.error(APP_PIPE, context.startup_error)
        return
    await load_pinned(context)
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


def in_flight(context: ServiceContext) -> int:
    """Inference requests admitted and not finished: waiting for a slot or holding one (a stream
    holds its slot until its last event was handed to the server)."""
    return context.queue.waiting() + context.queue.running()


async def _wait_until(done: Callable[[], bool], seconds: float, hurry: asyncio.Event) -> bool:
    """Poll ``done`` for at most ``seconds`` (or until ``hurry``); whether it became true."""
    deadline = time.monotonic() + max(0.0, seconds)
    while not done():
        left = deadline - time.monotonic()
        if left <= 0 or hurry.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), min(DRAIN_POLL_S, left))
    return True


async def drain_then_stop(context: ServiceContext, hurry: asyncio.Event) -> None:
    """Steps 1-3 of the shutdown (module docstring); returns when the server may stop."""
    settings = context.settings
    grace_s = settings.drain_grace_msec / 1000
    notice_s = min(settings.drain_notice_msec / 1000, grace_s)
    drain = context.drain
    drain.begin(grace_s)
    context.logger.debug(
        APP_PIPE,
        f"DRAIN: shutting down; /health answers 503 draining, new requests get 503; waiting up"
        f" to {grace_s:g} s for {in_flight(context)} request(s) in flight",
    )
    started = time.monotonic()

    def finished() -> bool:
        return in_flight(context) == 0 and time.monotonic() - started >= notice_s

    if await _wait_until(finished, grace_s, hurry):
        context.logger.debug(
            APP_PIPE, f"DRAIN: done after {time.monotonic() - started:.1f} s, nothing in flight"
        )
        return
    left = in_flight(context)
    if left:
        context.logger.error(
            APP_PIPE,
            f"DRAIN: the grace of {grace_s:g} s ended with {left} request(s) still in flight"
            " (waiting or generating): each gets a 503 'shutting down' error now",
        )
    drain.expire()
    if not await _wait_until(lambda: in_flight(context) == 0, DRAIN_ABORT_WAIT_S, asyncio.Event()):
        context.logger.error(
            APP_PIPE,
            f"DRAIN: {in_flight(context)} request(s) did not end {DRAIN_ABORT_WAIT_S:g} s after"
            " the cut; their connections are closed",
        )


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
    app = create_app(context)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        # httptools (llhttp, in C) parses requests: uvicorn's default h11 is pure Python.
        http="httptools",
        # The drain already waited for the requests in flight: this is only for the last bytes.
        timeout_graceful_shutdown=SERVER_CLOSE_WAIT_S,
    )
    server = _Server(config)
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()  # a second signal: end the drain's grace now
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal)

    async def stop_server() -> None:
        await stop.wait()
        await drain_then_stop(context, hurry)
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
            shadow=ShadowLogStore(context.database) if context.database is not None else None,
        ).run()
        store = warm_store(settings)
        if store is not None:
            store.drop_older_than(settings.log.live_day * 86400, time.time())

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
        # The stat page's queue chart: the queue looked at between its readings.
        periodic("activity", SAMPLE_INTERVAL_S, lambda: _sample_queue(app, context), now=True),
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
        if isinstance(context.shadow, Shadow):
            await context.shadow.aclose()
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
        # uvloop: the event loop in C (libuv). Every token of every answer passes through the
        # loop twice (from the engine, to the caller), and the CPU it spends is the engine's.
        code = asyncio.run(serve(context), loop_factory=uvloop.new_event_loop)
    finally:
        if context.database is not None:
            context.database.close()
    return code
