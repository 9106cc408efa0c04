"""The steps every engine-backed route shares: timing, model lookup, queue slot + engine handle,
and cancelling the work when the client goes away.

Errors are `ApiError`s with the original's texts (reference §2.4): unknown model → 400
``Model not found: "<name>"``, load failure → 500 ``on load model "<name>": <err>``, deadline
passed while waiting → 400 ``cancelled by timeout``; a full queue → 503 (new: the original's
queue was unbounded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from mentator.api.errors import ApiError, Duration
from mentator.engine.errors import EngineError
from mentator.models.discovery import ModelInfo
from mentator.scheduling import QueueFull, QueueTimeout
from mentator.service import EngineHandlePort, EngineManagerPort, LoadStatus, Services

T = TypeVar("T")

TIMEOUT_MESSAGE = "cancelled by timeout"
STARTING_MESSAGE = (
    "service is starting: the model scan and the engine backend selection are not finished;"
    " retry in a few seconds"
)
DISCONNECTED_MESSAGE = "cancelled: the client closed the connection"
CLIENT_CLOSED_STATUS = 499  # nginx's "client closed request": what the chat log records


@dataclass
class Timing:
    """Wall time of one request: ``promptMsec`` is everything except the queue wait."""

    started: float = field(default_factory=time.monotonic)
    queue_ms: int = 0

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    def duration(self) -> Duration:
        return Duration(
            prompt_msec=max(0, self.elapsed_ms() - self.queue_ms), queue_msec=self.queue_ms
        )


def require_engine(services: Services) -> EngineManagerPort:
    if services.engine is None:
        raise ApiError(503, STARTING_MESSAGE)
    return services.engine


def find_model(services: Services, name: str) -> ModelInfo:
    model = services.registry.find(name)
    if model is None:
        raise ApiError(400, f'Model not found: "{name}"')
    return model


@asynccontextmanager
async def engine_slot(
    services: Services,
    model: ModelInfo,
    gpulayer: float | None,
    context_size: int | None,
    deadline: float | None,
    timing: Timing,
) -> AsyncIterator[tuple[EngineHandlePort, LoadStatus]]:
    """A queue slot and a handle on the engine serving ``model``; both released on exit.

    ``deadline`` is a `time.monotonic` instant (the queue's clock) or None for no limit.
    """
    engine = require_engine(services)
    try:
        async with services.queue.slot(deadline) as waited_ms:
            timing.queue_ms = waited_ms
            try:
                handle, status = await engine.acquire(model, gpulayer, context_size)
            except EngineError as error:
                raise ApiError(500, f'on load model "{model.name}": {error.message}') from error
            try:
                yield handle, status
            finally:
                handle.release()
    except QueueFull as error:
        raise ApiError(503, str(error), headers={"Retry-After": "1"}) from error
    except QueueTimeout as error:
        raise ApiError(400, TIMEOUT_MESSAGE) from error


def remaining_s(deadline: float | None) -> float | None:
    """Seconds left until ``deadline``; a passed deadline is a 400 ``cancelled by timeout``."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ApiError(400, TIMEOUT_MESSAGE)
    return left


async def with_timeout(work: Awaitable[T], deadline: float | None) -> T:
    """``work`` bounded by ``deadline`` (400 ``cancelled by timeout`` when it passes)."""
    try:
        return await asyncio.wait_for(work, remaining_s(deadline))
    except TimeoutError as error:
        raise ApiError(400, TIMEOUT_MESSAGE) from error


class ClientDisconnected(Exception):  # noqa: N818 - it is an event, not a bug
    """The client closed the connection before the answer was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    # After the body was read, the next ASGI message is `http.disconnect`, which servers send
    # when the client goes away (or after the response is complete — we never get there).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; cancel it (which frees the queue slot and closes the engine connection,
    stopping the generation) and raise `ClientDisconnected` if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.exception() is not None:
            # The server cannot tell us about disconnects: just wait for the work.
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
    raise ClientDisconnected(DISCONNECTED_MESSAGE)
