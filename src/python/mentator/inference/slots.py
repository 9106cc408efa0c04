"""The steps every engine-backed use-case shares: the model lookup, THE way to take a queue slot
with a handle on the engine serving the model (`Slots`), deadlines, and giving up when the caller
leaves.

Errors are the domain errors of `errors.py` with the original's texts (reference §2.4): unknown
model → ``Model not found: "<name>"``, load failure → ``on load model "<name>": <err>``, deadline
passed while waiting → ``cancelled by timeout``; a full queue → `Busy` (new: the original's queue
was unbounded); no engine yet → `Starting`, or `StartupFailed` with the reason when the startup
failed (retrying will not help then); the service shutting down → `Draining` for a new request,
`GraceEnded` for one the drain's grace cut off (`drain.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mentator.engine.errors import EngineError, ModelTooLargeError
from mentator.engine.ports import EngineHandlePort, EngineManagerPort, LoadStatus
from mentator.inference.drain import Drain
from mentator.inference.errors import (
    Busy,
    CallerLeft,
    Draining,
    EngineFailed,
    InferenceError,
    InvalidRequest,
    ModelNotFound,
    NoRoom,
    Starting,
    StartupFailed,
    TimedOut,
)
from mentator.inference.timing import Timing
from mentator.memory import available_memory_mb
from mentator.models.discovery import ModelInfo
from mentator.scheduling import ComputeTurns, QueueFull, QueueTimeout, RequestQueue

T = TypeVar("T")


class ModelFinder(Protocol):
    """What the use-cases need of `models.registry.ModelRegistry`."""

    def find(self, name: str) -> ModelInfo | None: ...


class EngineSource(Protocol):
    """Where the engine manager is (`context.ServiceContext`): None until the startup finished,
    and for good when it failed (``startup_error`` says why); and the service's `Drain` (set
    draining on SIGTERM)."""

    @property
    def engine(self) -> EngineManagerPort | None: ...

    @property
    def startup_error(self) -> str | None: ...

    @property
    def drain(self) -> Drain: ...


def require_engine(source: EngineSource) -> EngineManagerPort:
    engine = source.engine
    if engine is None:
        if source.startup_error is not None:
            raise StartupFailed(source.startup_error)
        raise Starting()
    return engine


def find_model(models: ModelFinder, name: str) -> ModelInfo:
    model = models.find(name)
    if model is None:
        raise ModelNotFound(name)
    return model


def check_context_size(model: ModelInfo, context_size: int | None) -> None:
    """A ``contextSize`` above what the model was trained for (GGUF ``context_length``, llama.cpp's
    ``n_ctx_train``) is the client's mistake: say so before loading anything."""
    limit = model.context_length
    if context_size is not None and limit is not None and context_size > limit:
        raise InvalidRequest(
            f'contextSize {context_size} is more than model "{model.name}" supports '
            f"(trained context {limit} tokens): use at most {limit}, or leave contextSize out"
        )


def load_failure(model: ModelInfo, context_size: int | None, error: EngineError) -> InferenceError:
    """A failed load. With a contextSize the client chose, the context (its KV cache) not fitting
    in memory is the likely cause: a 400 that says what the model and the memory allow."""
    text = f'on load model "{model.name}": {error.message}'
    if isinstance(error, ModelTooLargeError):
        return NoRoom(text)
    if context_size is None:
        return EngineFailed(text)
    limit = "unknown" if model.context_length is None else f"{model.context_length} tokens"
    free = available_memory_mb()
    memory = "unknown" if free is None else f"{free} MB"
    return InvalidRequest(
        f"{text} (contextSize {context_size} could not be loaded: the model supports up to "
        f"{limit}, available memory is {memory}; try a smaller contextSize or leave it out)"
    )


@dataclass(frozen=True)
class Placement:
    """Where a request runs: the model, and the engine settings it asks for (None: default);
    ``keep_alive_s``: how long the model stays loaded once idle (None: the config's)."""

    model: ModelInfo
    gpulayer: float | None = None
    context_size: int | None = None
    keep_alive_s: float | None = None


class Lease:
    """A held queue slot and the engine handle taken inside it, with the model's turn to compute
    (`ComputeTurns`; taken again after the engine died under it: `Slots.run`)."""

    def __init__(
        self,
        manager: EngineManagerPort,
        placement: Placement,
        turns: ComputeTurns,
        deadline: float | None,
        timing: Timing,
    ) -> None:
        self._manager = manager
        self._placement = placement
        self._turns = turns
        self._deadline = deadline
        self._timing = timing
        self._handle: EngineHandlePort | None = None

    async def acquire(self) -> tuple[EngineHandlePort, LoadStatus]:
        """The handle (loading the model when it is not resident), once the model has its turn;
        the wait for the turn counts as queue time and is bounded by the deadline."""
        where = self._placement
        try:
            handle, status = await self._manager.acquire(
                where.model, where.gpulayer, where.context_size, where.keep_alive_s
            )
        except EngineError as error:
            raise load_failure(where.model, where.context_size, error) from error
        started = time.monotonic()
        try:
            await self._turns.enter(
                where.model.name, self._manager.models_computing_at_once(), self._deadline
            )
        except BaseException as error:
            handle.release()
            if isinstance(error, QueueTimeout):
                # TimedOut here, not in `hold`: a stream takes its handle outside hold's body.
                raise TimedOut() from error
            raise
        finally:  # a wait that timed out is queue time too
            self._timing.queue_ms += round((time.monotonic() - started) * 1000)
        self._handle = handle
        return handle, status

    def release(self) -> None:
        if self._handle is not None:
            self._handle.release()
            self._handle = None
            self._turns.leave(self._placement.model.name)


def engine_failed(error: EngineError) -> InferenceError:
    """An engine failure during a generation (reference: ``on get response text: <err>``)."""
    return EngineFailed(f"on get response text: {error.message}")


class Slots:
    """The one way the use-cases reach the engine: find the model, wait for a queue slot (bounded
    by a deadline), take a handle on the engine serving the model, release both at the end."""

    def __init__(self, engines: EngineSource, models: ModelFinder, queue: RequestQueue) -> None:
        self._engines = engines
        self._models = models
        self._queue = queue
        self._turns = ComputeTurns()

    def engine(self) -> EngineManagerPort:
        """The admission of a request, the first step of every use-case: the engine manager, or
        `Draining` (the service shuts down: this request is new, refuse it), `Starting`,
        `StartupFailed`. A request admitted here runs on when the drain begins later."""
        if self._engines.drain.draining:
            raise Draining()
        return require_engine(self._engines)

    def abortable(self) -> AbstractAsyncContextManager[None]:
        """A block of a request's work that the end of the drain's grace cuts off with
        `GraceEnded` (`Drain.abortable`); enter and leave it in one task."""
        return self._engines.drain.abortable()

    def find_model(self, name: str) -> ModelInfo:
        return find_model(self._models, name)

    def model_name(self, name: str) -> str | None:
        """The registry's name of the model ``name`` asks for; None when none has it."""
        model = self._models.find(name)
        return model.name if model is not None else None

    @asynccontextmanager
    async def hold(
        self, placement: Placement, deadline: float | None, timing: Timing
    ) -> AsyncIterator[Lease]:
        """A queue slot for the body; the handle is taken with `Lease.acquire` and released,
        with the slot, on exit. ``deadline`` is a `time.monotonic` instant or None (no limit).
        The request was admitted by `engine()` before: a drain that began since does not refuse
        it here."""
        manager = require_engine(self._engines)
        check_context_size(placement.model, placement.context_size)
        try:
            async with self._queue.slot(deadline, placement.model.name) as waited_ms:
                timing.queue_ms = waited_ms
                lease = Lease(manager, placement, self._turns, deadline, timing)
                try:
                    yield lease
                finally:
                    lease.release()
        except QueueFull as error:
            raise Busy(str(error)) from error
        except QueueTimeout as error:
            raise TimedOut() from error

    async def run(
        self,
        placement: Placement,
        deadline: float | None,
        timing: Timing,
        work: Callable[[EngineHandlePort, LoadStatus], Awaitable[T]],
        failed: Callable[[EngineError], InferenceError] = engine_failed,
    ) -> T:
        """`work` on a handle, retried once on a fresh engine when the engine had died before
        the request reached it (`EngineError.unsent`: the connection was refused, so it did no
        work and produced no token). A request the engine had started gets the error, as
        ``failed`` words it.

        The retry keeps the queue slot; it releases the dead engine's handle first, so the manager
        (which now sees the exit) starts a new child on the next acquire. The wait for the slot
        and the work are one `abortable` block: the end of a drain's grace cuts them off.
        """
        try:
            async with self.abortable(), self.hold(placement, deadline, timing) as lease:
                for attempt in (1, 2):
                    handle, status = await lease.acquire()
                    try:
                        return await work(handle, status)
                    except EngineError as error:
                        if attempt == 2 or not error.unsent or error.status is not None:
                            raise
                    finally:
                        lease.release()
                raise AssertionError("unreachable")  # pragma: no cover
        except EngineError as error:
            raise failed(error) from error


def remaining_s(deadline: float | None) -> float | None:
    """Seconds left until ``deadline``; a passed deadline is `TimedOut`."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOut()
    return left


async def with_timeout(work: Awaitable[T], deadline: float | None) -> T:
    """``work`` bounded by ``deadline`` (`TimedOut` when it passes)."""
    try:
        return await asyncio.wait_for(work, remaining_s(deadline))
    except TimeoutError as error:
        raise TimedOut() from error


async def until_caller_leaves(work: Awaitable[T], caller_left: Awaitable[None] | None) -> T:
    """Run ``work``; cancel it (which frees the queue slot and closes the engine connection,
    stopping the generation) and raise `CallerLeft` if ``caller_left`` completes first.

    ``caller_left`` comes from the HTTP layer; if it fails (the server cannot tell about
    disconnects), the work simply runs to its end.
    """
    task = asyncio.ensure_future(work)
    if caller_left is None:
        return await task
    watcher = asyncio.ensure_future(caller_left)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.exception() is not None:
            await asyncio.wait({task})
    except BaseException:
        task.cancel()
        watcher.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
        raise
    if task.done():
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise CallerLeft()
