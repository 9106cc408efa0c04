"""The fair, bounded queue in front of the engine's slots.

`slots` requests run at once per model (each resident model has its own llama-server with
`--parallel` slots, batched continuously); the rest wait in arrival order. A request waits only
behind requests for the same model (its ``key``): one model's load or busy slots never hold up
another model's requests. At most `limit` may wait (all models together): one more is refused
at once (`QueueFull` → HTTP 503) instead of piling up. A request's deadline (`durationMsec`)
also bounds its wait (`QueueTimeout` → 400 "cancelled by timeout"). A waiter that goes away
(client disconnect = task cancelled) leaves the line without taking or leaking a slot; a slot
handed to a waiter at the very moment it was cancelled is passed on to the next one.

Only the event loop changes the queue; `waiting()` and `running()` are also read from worker
threads (/state, /health, the heartbeat), so they return counters kept up to date on the loop: a
read never walks the line while the loop changes it (issue 19: iterating the deque from a thread
raised "deque mutated during iteration" → /state and /health answered 500).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class QueueFull(Exception):  # noqa: N818 - the name is the API contract
    """Too many requests already wait; the message is meant for the client."""


class QueueTimeout(Exception):  # noqa: N818 - the name is the API contract
    """The request's deadline passed while it waited for a slot."""


class RequestQueue:
    """FIFO admission to `slots` concurrent runs with at most `limit` waiters.

    Deadlines are instants of `clock` (default `time.monotonic`, the clock asyncio uses).
    """

    def __init__(
        self, slots: int, limit: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        self.slots = slots
        self.limit = limit
        self._clock = clock
        self._running = 0
        self._running_by_key: dict[str | None, int] = {}
        self._waiters: deque[tuple[asyncio.Future[None], str | None]] = deque()
        # len(self._waiters), kept beside it: every waiter in the line is pending (one that is
        # granted or cancelled leaves it in the same step), so this is the number waiting.
        self._waiting = 0

    def waiting(self) -> int:
        """Requests waiting for a slot (not counting the running ones); safe from any thread."""
        return self._waiting

    def running(self) -> int:
        return self._running

    @asynccontextmanager
    async def slot(
        self, deadline: float | None = None, key: str | None = None
    ) -> AsyncIterator[int]:
        """Hold one of ``key``'s slots (the model's) for the body; yields the milliseconds spent
        waiting for it."""
        started = self._clock()
        await self._enter(deadline, key)
        try:
            yield max(0, round((self._clock() - started) * 1000))
        finally:
            self._leave(key)

    def _take(self, key: str | None) -> None:
        self._running += 1
        self._running_by_key[key] = self._running_by_key.get(key, 0) + 1

    def _free(self, key: str | None) -> bool:
        return self._running_by_key.get(key, 0) < self.slots

    async def _enter(self, deadline: float | None, key: str | None) -> None:
        if self._free(key) and not any(other == key for _, other in self._waiters):
            self._take(key)
            return
        if self.waiting() >= self.limit:
            raise QueueFull(
                f"server busy: {self._running} requests running and {self.waiting()} waiting "
                f"(queueLimit {self.limit}); retry later"
            )
        remaining = None if deadline is None else deadline - self._clock()
        if remaining is not None and remaining <= 0:
            raise QueueTimeout("cancelled by timeout")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, key))
        self._waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except BaseException as error:
            granted = waiter.done() and not waiter.cancelled()
            if not waiter.done():
                waiter.cancel()
            self._discard(waiter)
            if granted:
                # The slot arrived together with the timeout/cancellation: pass it on.
                self._leave(key)
            if isinstance(error, TimeoutError):
                raise QueueTimeout("cancelled by timeout") from None
            raise
        # The slot was handed over by `_leave` (the running count already includes it).

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        for entry in self._waiters:
            if entry[0] is waiter:
                self._waiters.remove(entry)
                self._waiting -= 1
                return
        # already handed a slot by `_leave`, which took it out of the line

    def _leave(self, key: str | None) -> None:
        """Hand the slot to the oldest live waiter for the same key, or free it."""
        for entry in list(self._waiters):
            waiter, other = entry
            if other != key:
                continue
            self._waiters.remove(entry)
            self._waiting -= 1
            if not waiter.done():
                waiter.set_result(None)  # the running counts stay: the slot changes hands
                return
        self._running -= 1
        left = self._running_by_key.get(key, 1) - 1
        if left:
            self._running_by_key[key] = left
        else:
            self._running_by_key.pop(key, None)
