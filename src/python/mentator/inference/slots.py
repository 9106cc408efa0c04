"""The steps every engine-backed use-case shares: the model lookup, a queue slot with a handle on
the engine serving the model, deadlines, and giving up when the caller leaves.

Errors are the domain errors of `errors.py` with the original's texts (reference §2.4): unknown
model → ``Model not found: "<name>"``, load failure → ``on load model "<name>": <err>``, deadline
passed while waiting → ``cancelled by timeout``; a full queue → `Busy` (new: the original's queue
was unbounded); no engine yet → `Starting`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

from mentator.engine.errors import EngineError
from mentator.engine.ports import EngineHandlePort, EngineManagerPort, LoadStatus
from mentator.inference.errors import (
    Busy,
    CallerLeft,
    EngineFailed,
    InferenceError,
    InvalidRequest,
    ModelNotFound,
    Starting,
    TimedOut,
)
from mentator.inference.timing import Timing
from mentator.memory import available_memory_mb
from mentator.models.discovery import ModelInfo
from mentator.scheduling import QueueFull, QueueTimeout, RequestQueue

T = TypeVar("T")


class ModelFinder(Protocol):
    """What the use-cases need of `models.registry.ModelRegistry`."""

    def find(self, name: str) -> ModelInfo | None: ...


def require_engine(engine: EngineManagerPort | None) -> EngineManagerPort:
    if engine is None:
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
    if context_size is None:
        return EngineFailed(text)
    limit = "unknown" if model.context_length is None else f"{model.context_length} tokens"
    free = available_memory_mb()
    memory = "unknown" if free is None else f"{free} MB"
    return InvalidRequest(
        f"{text} (contextSize {context_size} could not be loaded: the model supports up to "
        f"{limit}, available memory is {memory}; try a smaller contextSize or leave it out)"
    )


@asynccontextmanager
async def engine_slot(
    engine: EngineManagerPort | None,
    queue: RequestQueue,
    model: ModelInfo,
    gpulayer: float | None,
    context_size: int | None,
    deadline: float | None,
    timing: Timing,
) -> AsyncIterator[tuple[EngineHandlePort, LoadStatus]]:
    """A queue slot and a handle on the engine serving ``model``; both released on exit.

    ``deadline`` is a `time.monotonic` instant (the queue's clock) or None for no limit.
    """
    manager = require_engine(engine)
    check_context_size(model, context_size)
    try:
        async with queue.slot(deadline) as waited_ms:
            timing.queue_ms = waited_ms
            try:
                handle, status = await manager.acquire(model, gpulayer, context_size)
            except EngineError as error:
                raise load_failure(model, context_size, error) from error
            try:
                yield handle, status
            finally:
                handle.release()
    except QueueFull as error:
        raise Busy(str(error)) from error
    except QueueTimeout as error:
        raise TimedOut() from error


async def run_on_engine(
    engine: EngineManagerPort | None,
    queue: RequestQueue,
    model: ModelInfo,
    gpulayer: float | None,
    context_size: int | None,
    deadline: float | None,
    timing: Timing,
    work: Callable[[EngineHandlePort, LoadStatus], Awaitable[T]],
) -> T:
    """`work` on a handle from `engine_slot`, retried once on a fresh engine when the engine had
    died before the request reached it (`EngineError.unsent`: the connection was refused, so it
    did no work and produced no token). A request the engine had started gets the error.

    The retry keeps the queue slot; it releases the dead engine's handle first, so the manager
    (which now sees the exit) starts a new child on the next acquire.
    """
    manager = require_engine(engine)
    check_context_size(model, context_size)
    try:
        async with queue.slot(deadline) as waited_ms:
            timing.queue_ms = waited_ms
            for attempt in (1, 2):
                try:
                    handle, status = await manager.acquire(model, gpulayer, context_size)
                except EngineError as error:
                    raise load_failure(model, context_size, error) from error
                try:
                    return await work(handle, status)
                except EngineError as error:
                    if attempt == 2 or not error.unsent or error.status is not None:
                        raise
                finally:
                    handle.release()
            raise AssertionError("unreachable")  # pragma: no cover
    except QueueFull as error:
        raise Busy(str(error)) from error
    except QueueTimeout as error:
        raise TimedOut() from error


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
