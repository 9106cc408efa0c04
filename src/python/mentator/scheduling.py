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


def _time_left(deadline: float | None, now: float) -> float | None:
    """Seconds until ``deadline`` (None: no limit); `QueueTimeout` when it has passed."""
    if deadline is None:
        return None
    if deadline - now <= 0:
        raise QueueTimeout("cancelled by timeout")
    return deadline - now


async def _granted(
    waiter: asyncio.Future[None],
    remaining: float | None,
    *,
    give_back: Callable[[], None],
    drop: Callable[[], None],
) -> None:
    """Wait up to ``remaining`` seconds for ``waiter`` to be granted (its result set by the one
    who hands the slot or turn on). On a timeout (`QueueTimeout`) or a cancellation: a grant
    that came at that very moment is given back (``give_back``), else the waiter leaves the
    line (``drop``), so nothing is taken or leaked."""
    try:
        await asyncio.wait_for(asyncio.shield(waiter), remaining)
    except BaseException as error:
        if waiter.done() and not waiter.cancelled():
            give_back()
        else:
            waiter.cancel()
            drop()
        if isinstance(error, TimeoutError):
            raise QueueTimeout("cancelled by timeout") from None
        raise


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
        remaining = _time_left(deadline, self._clock())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, key))
        self._waiting += 1
        await _granted(
            waiter,
            remaining,
            give_back=lambda: self._leave(key),  # pass the slot on
            drop=lambda: self._discard(waiter),
        )
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


class ComputeTurns:
    """Which resident models may compute at once, when their children share the CPU's cores.

    Each llama-server child computes with as many threads as the machine has cores (or the
    config's ``threads``), and ggml's threads meet at a barrier after every operation: when two
    children compute at the same time, each barrier waits for a thread the other child's threads
    pushed off a core. Measured on 2 cores (`bench/residency_trace.py`: 60 short requests over
    three resident models, 4 clients): 16.7 s computing at once, 11.0 s taking turns. So on the
    CPU, models take turns: at most ``limit`` models (cores // threads per child, at least 1)
    have requests on their engine at a time, any number of requests each (a child batches its
    own requests).

    A request for a model that has the turn enters at once, unless a request for another model
    waits: then it lines up behind it (no model keeps the turn forever). When the last request of
    a model leaves, the line's first waiter gets the turn, and with it every waiter for the same
    model, so a model's queued requests run together (the fairness bound: a waiter waits for the
    models ahead of it in the line, each once). ``limit`` None: no turns (a GPU backend).
    The limit comes with each request (the engine's `models_computing_at_once`): a CPU fallback
    changes it at run time.
    """

    def __init__(self) -> None:
        self._limit: int | None = None
        self._active: dict[str, int] = {}  # model → requests computing now
        self._line: deque[tuple[asyncio.Future[None], str]] = deque()

    def active(self) -> dict[str, int]:
        return dict(self._active)

    def _room(self, key: str) -> bool:
        limit = self._limit
        return limit is None or key in self._active or len(self._active) < limit

    def _take(self, key: str) -> None:
        self._active[key] = self._active.get(key, 0) + 1

    async def enter(self, key: str, limit: int | None, deadline: float | None = None) -> None:
        """Wait for ``key``'s turn with at most ``limit`` models computing (`QueueTimeout` when
        ``deadline``, a `time.monotonic` instant, passes first); call `leave` once done."""
        self._limit = limit
        if not self._line and self._room(key):
            self._take(key)
            return
        remaining = _time_left(deadline, time.monotonic())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append((waiter, key))

        def drop() -> None:
            self._line = deque(entry for entry in self._line if entry[0] is not waiter)
            self._admit()  # it may have been the line's head

        await _granted(waiter, remaining, give_back=lambda: self.leave(key), drop=drop)

    def leave(self, key: str) -> None:
        left = self._active.get(key, 1) - 1
        if left > 0:
            self._active[key] = left
        else:
            self._active.pop(key, None)
            self._admit()

    def _admit(self) -> None:
        while self._line and self._room(self._line[0][1]):
            key = self._line[0][1]
            staying: deque[tuple[asyncio.Future[None], str]] = deque()
            for waiter, other in self._line:
                if other != key:
                    staying.append((waiter, other))
                elif not waiter.done():
                    self._take(key)
                    waiter.set_result(None)
            self._line = staying
