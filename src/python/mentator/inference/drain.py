"""The way out of a running service (SIGTERM), as the use-cases see it: the drain.

`server.py` begins the drain on SIGTERM; from then on the use-cases refuse every new request
(`Draining`, HTTP 503 with Retry-After: another instance should answer it) while the requests
already admitted — waiting for a queue slot or generating, streams included — run on. When they
are done the server stops. When the grace (``drainGraceMsec``) ends first, the server calls
`Drain.expire`: every block a request runs under `Drain.abortable` is cancelled and ends in
`GraceEnded` (HTTP 503, or an error event in a stream), which the use-case records and logs like
any failure, so nothing is cut off without a word.

"Admitted" means: the use-case asked `Slots.engine()` before the drain began (the first step of
every use-case, before the queue), so a request never gets the draining answer after it started
waiting or generating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mentator.inference.errors import GraceEnded


class Drain:
    """Whether the service is draining, and the blocks of work its grace may cut off."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._began: float | None = None
        self._grace_s = 0.0
        self._expired = False
        self._scopes: set[asyncio.Timeout] = set()

    @property
    def draining(self) -> bool:
        """True from `begin` on: new requests are refused, /health says "draining"."""
        return self._began is not None

    @property
    def expired(self) -> bool:
        """True from `expire` on: the grace ended."""
        return self._expired

    @property
    def grace_s(self) -> float:
        return self._grace_s

    def elapsed_s(self) -> float:
        """Seconds since the drain began (0 when it did not)."""
        return 0.0 if self._began is None else self._clock() - self._began

    def begin(self, grace_s: float) -> None:
        """Refuse new requests from now on; in-flight ones may take ``grace_s`` more seconds."""
        if self._began is None:
            self._began = self._clock()
            self._grace_s = grace_s

    def expire(self) -> int:
        """The grace ended: cancel every running `abortable` block (each ends in `GraceEnded`);
        a block entered later ends at once. Returns how many blocks were running. Call it from
        the event loop's thread."""
        self.begin(0.0)
        self._expired = True
        scopes = list(self._scopes)
        for scope in scopes:
            _cut(scope)
        return len(scopes)

    @asynccontextmanager
    async def abortable(self) -> AsyncIterator[None]:
        """A block of one request's work (waiting for a slot, generating) that the end of the
        grace cancels with `GraceEnded`. Enter and leave it in the same task."""
        scope = asyncio.timeout(None)
        try:
            async with scope:
                self._scopes.add(scope)
                try:
                    if self._expired:
                        _cut(scope)
                    yield
                finally:
                    self._scopes.discard(scope)
        except TimeoutError as error:
            if self._expired and scope.expired():
                raise GraceEnded(self._grace_s) from error
            raise


def _cut(scope: asyncio.Timeout) -> None:
    # A deadline that has passed: the scope cancels its task at the next loop turn, and turns the
    # cancellation into TimeoutError on the way out (the stdlib keeps the task's cancel count).
    scope.reschedule(asyncio.get_running_loop().time())
