"""Shadow traffic: a sampled share of the live completions, copied to a second service and
compared there, in the background (config ``shadowUrl``, ``shadowPercent``, ``shadowQueue``,
``shadowApiKey``; the server builds one `Shadow` and puts it on the context).

The caller's request is never delayed, changed or failed by it: `offer` (called by the exchange
recorder as the exchange ends) only draws the sample and puts the copy on a bounded queue without
waiting — a full queue drops the copy and counts it — and one background task sends the copies,
one at a time, to the second service (`Replayer.send`: the one named host, no redirects, the
copy marked with `SHADOW_HEADER` so that the second service never shadows it again). The answers
are compared as a replay compares them (`runner.compare`: the answer's ``data``, a structural
JSON diff when they differ) and counted (`ShadowStats`: identical, different, error — a failure
on either side — and dropped), and each comparison is a row of the shadow table
(`storage.shadowlog`). A failure of the shadow itself (its database, a bug) is logged, never
raised.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from mentator.inference.shadowing import SHADOW_HEADER, ExchangeCopy, ShadowStats
from mentator.logging_protocol import LoggerProtocol
from mentator.replay.answers import PROMPT, V1_CHAT, V1_TEXT, stored_answer
from mentator.replay.runner import DIFFERENT, IDENTICAL, Replayer, ReplayOptions, compare
from mentator.storage.database import StorageError
from mentator.storage.shadowlog import ShadowLogStore, ShadowRow

SHADOW_PIPE = "SHADOW"
SHADOWED_ROUTES = frozenset({PROMPT, V1_CHAT, V1_TEXT})


class Shadow:
    """`inference.shadowing.ShadowPort`: samples, queues, sends and compares copies."""

    def __init__(
        self,
        options: ReplayOptions,
        *,
        percent: int,
        queue_size: int,
        store: Callable[[], ShadowLogStore | None],
        logger: LoggerProtocol,
        clock_ms: Callable[[], int],
        sample: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        marked = ReplayOptions(
            target=options.target,
            api_key=options.api_key,
            concurrency=1,
            timeout_s=options.timeout_s,
            headers=(*options.headers, (SHADOW_HEADER, "1")),
        )
        self._target = options.target.base_url
        self._replayer = Replayer(marked, transport)
        self._percent = percent
        self._queue: asyncio.Queue[ExchangeCopy] = asyncio.Queue(maxsize=queue_size)
        self._store = store
        self._logger = logger
        self._clock_ms = clock_ms
        self._sample = sample
        self._worker: asyncio.Task[None] | None = None
        self._counts = {IDENTICAL: 0, DIFFERENT: 0, "error": 0, "dropped": 0}

    def offer(self, copy: ExchangeCopy) -> None:
        """Maybe copy ``copy`` (never waits, never raises)."""
        if copy.route not in SHADOWED_ROUTES or self._sample() * 100 >= self._percent:
            return
        try:
            loop = asyncio.get_running_loop()
            self._queue.put_nowait(copy)
        except (asyncio.QueueFull, RuntimeError):  # full, or not on the service's loop
            self._counts["dropped"] += 1
            return
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="shadow")

    def stats(self) -> ShadowStats:
        return ShadowStats(
            target=self._target,
            percent=self._percent,
            identical=self._counts[IDENTICAL],
            different=self._counts[DIFFERENT],
            error=self._counts["error"],
            dropped=self._counts["dropped"],
            queued=self._queue.qsize(),
        )

    async def drained(self) -> None:
        """Until every queued copy is compared (tests, benchmarks)."""
        await self._queue.join()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._replayer.aclose()

    async def _work(self) -> None:
        while True:
            copy = await self._queue.get()
            try:
                await self._compare(copy)
            except Exception as error:  # the shadow must never end; say why a copy was lost
                self._counts["error"] += 1
                self._logger.error(
                    SHADOW_PIPE,
                    f"shadow copy of {copy.route} failed: {type(error).__name__}: {error}",
                )
            finally:
                self._queue.task_done()

    async def _compare(self, copy: ExchangeCopy) -> None:
        body: Any = json.loads(copy.request)
        primary = stored_answer(copy.code, copy.response)
        started = time.monotonic()
        answer = await self._replayer.send(copy.route, body)
        shadow_ms = round((time.monotonic() - started) * 1000)
        outcome, diff = compare(primary, answer)
        self._counts[outcome if outcome in (IDENTICAL, DIFFERENT) else "error"] += 1
        detail: Any = diff if outcome == DIFFERENT else (answer.error or primary.error)
        row = ShadowRow(
            ts=self._clock_ms(),
            route=copy.route,
            outcome=outcome,
            primary_code=copy.code,
            shadow_code=answer.code,
            primary_ms=copy.primary_ms,
            shadow_ms=shadow_ms,
            detail=detail,
        )
        store = self._store()
        if store is None:
            return
        try:
            await asyncio.to_thread(store.write, row)
        except StorageError as error:
            self._logger.error(SHADOW_PIPE, f"shadow comparison not stored: {error}")
