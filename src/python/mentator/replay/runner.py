"""Re-send stored requests to a service and compare its answers with the stored ones.

Safety: requests go to the one base URL given (`Target`), to the three routes the chat log holds
and nowhere else: redirects are not followed (a redirect is reported as an error), and each URL
is checked against the target before it is sent. Nothing of the stored request but its body is
sent (no stored headers); the API key, when given, goes as ``Authorization: Bearer``. At most
``concurrency`` requests are in flight, and with a ``rate`` they start at most that many per
second.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from mentator.replay.answers import (
    PROMPT,
    Answer,
    replayed_answer,
    route_of,
    stored_answer,
    streamed_answer,
)
from mentator.replay.diff import canonical, json_diff
from mentator.storage.chatlog import StoredExchange

IDENTICAL = "identical"
DIFFERENT = "different"
ERROR_REPLAYED = "error_replayed"  # the stored request was answered; the replay failed
ERROR_STORED = "error_stored"  # the stored request had failed; the replay was answered
BOTH_ERROR = "both_error"
SKIPPED = "skipped"  # the body's shape names no route the replay knows
OUTCOMES = (IDENTICAL, DIFFERENT, ERROR_REPLAYED, ERROR_STORED, BOTH_ERROR, SKIPPED)


class TargetError(ValueError):
    """The ``--against`` URL cannot be used."""


@dataclass(frozen=True)
class Target:
    """The one service requests may go to: ``http(s)://host[:port][/prefix]``."""

    base_url: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"--against must be an http(s) URL with a host, not {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise TargetError(
                f"--against takes scheme, host, port and path only (no query, fragment or "
                f"user): {url!r}"
            )
        return cls(url.rstrip("/"))

    def url_for(self, route: str) -> str:
        url = f"{self.base_url}{route}"
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        if (mine.scheme, mine.netloc) != (theirs.scheme, theirs.netloc):
            raise TargetError(f"refusing to send to {url!r}: not on {self.base_url!r}")
        return url


@dataclass(frozen=True)
class ReplayOptions:
    target: Target
    api_key: str | None = None
    concurrency: int = 4
    rate: float | None = None  # requests started per second at most (None: no limit)
    timeout_s: float = 600.0
    # Sent with every request (shadow copies mark themselves, `inference.shadowing`).
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReplayResult:
    """One stored request, replayed."""

    id: int
    route: str | None
    outcome: str
    stored: Answer
    stored_ms: int
    replayed: Answer | None = None
    replayed_ms: int | None = None
    diff: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_ratio(self) -> float | None:
        """Replayed over stored time (the stored one: queue plus prompt), both answered."""
        answered = self.outcome in (IDENTICAL, DIFFERENT)
        if not answered or self.replayed_ms is None or self.stored_ms <= 0:
            return None
        return round(self.replayed_ms / self.stored_ms, 4)

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "id": self.id,
            "route": self.route,
            "outcome": self.outcome,
            "stored": _side(self.stored, self.stored_ms),
        }
        if self.replayed is not None:
            line["replayed"] = _side(self.replayed, self.replayed_ms)
        line["latencyRatio"] = self.latency_ratio
        if self.outcome == DIFFERENT:
            line["diff"] = self.diff
        return line


def _side(answer: Answer, ms: int | None) -> dict[str, Any]:
    side: dict[str, Any] = {"code": answer.code, "ms": ms}
    if answer.error is not None:
        side["error"] = answer.error
    return side


def compare(stored: Answer, replayed: Answer) -> tuple[str, list[dict[str, Any]]]:
    if not stored.ok and not replayed.ok:
        return BOTH_ERROR, []
    if not stored.ok:
        return ERROR_STORED, []
    if not replayed.ok:
        return ERROR_REPLAYED, []
    if canonical(stored.data) == canonical(replayed.data):
        return IDENTICAL, []
    return DIFFERENT, json_diff(stored.data, replayed.data)


class Pacer:
    """Spaces request starts ``1 / rate`` seconds apart (no limit without a rate)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        await asyncio.sleep(start - now)


class Replayer:
    """Sends stored requests to the target; `run` yields each result as it is ready."""

    def __init__(
        self, options: ReplayOptions, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._options = options
        headers = dict(options.headers)
        if options.api_key:
            headers["Authorization"] = f"Bearer {options.api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            follow_redirects=False,
            timeout=httpx.Timeout(options.timeout_s, connect=10.0),
            transport=transport,
        )
        self._pacer = Pacer(options.rate)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def one(self, exchange: StoredExchange) -> ReplayResult:
        stored = stored_answer(exchange.code, exchange.response)
        stored_ms = exchange.prompt_ms + exchange.queue_ms
        body = _body(exchange.request)
        route = route_of(body)
        if route is None:
            return ReplayResult(exchange.id, None, SKIPPED, stored, stored_ms)
        await self._pacer.wait()
        started = time.monotonic()
        replayed = await self.send(route, body)
        replayed_ms = round((time.monotonic() - started) * 1000)
        outcome, diff = compare(stored, replayed)
        return ReplayResult(
            exchange.id, route, outcome, stored, stored_ms, replayed, replayed_ms, diff
        )

    async def send(self, route: str, body: dict[str, Any]) -> Answer:
        """``body`` to ``route`` of the target; its answer (a failure to connect, a redirect or
        an error status is an `Answer` with an error, never an exception)."""
        url = self._options.target.url_for(route)
        try:
            if body.get("stream") is True and route != PROMPT:
                async with self._http.stream("POST", url, json=body) as response:
                    if response.status_code == 200:
                        return streamed_answer(200, [line async for line in response.aiter_lines()])
                    await response.aread()
            else:
                response = await self._http.post(url, json=body)
        except httpx.HTTPError as error:
            return Answer(0, error=f"{type(error).__name__}: {error}")
        if response.is_redirect:
            where = response.headers.get("location", "?")
            return Answer(response.status_code, error=f"redirect to {where} not followed")
        return replayed_answer(route, response.status_code, _json(response))

    async def run(self, exchanges: Iterable[StoredExchange]) -> AsyncIterator[ReplayResult]:
        """The results in the order they finish, ``concurrency`` requests at a time."""
        pending = iter(exchanges)
        results: asyncio.Queue[ReplayResult | None] = asyncio.Queue()

        async def worker() -> None:
            try:
                for exchange in pending:
                    await results.put(await self.one(exchange))
            finally:
                await results.put(None)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, self._options.concurrency))]
        running = len(workers)
        try:
            while running:
                result = await results.get()
                if result is None:
                    running -= 1
                else:
                    yield result
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


def _body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": response.text[:500] or response.reason_phrase}


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def summary(results: Sequence[ReplayResult]) -> dict[str, Any]:
    counts = {outcome: 0 for outcome in OUTCOMES}
    for result in results:
        counts[result.outcome] += 1
    compared = len(results) - counts[SKIPPED]
    ratios = [r.latency_ratio for r in results if r.latency_ratio is not None]
    return {
        "total": len(results),
        **counts,
        "identicalShare": round(counts[IDENTICAL] / compared, 4) if compared else None,
        "latencyRatioMedian": percentile(ratios, 0.5),
        "latencyRatioP95": percentile(ratios, 0.95),
    }


def summary_text(target: Target, numbers: dict[str, Any]) -> str:
    share = numbers["identicalShare"]
    identical = f"{numbers[IDENTICAL]} identical" + (
        f" ({share * 100:.1f} %)" if share is not None else ""
    )
    median, p95 = numbers["latencyRatioMedian"], numbers["latencyRatioP95"]
    latency = (
        f"latency ratio (replayed / stored) median {median:.2f}, p95 {p95:.2f}"
        if median is not None and p95 is not None
        else "no latency ratio (no request answered on both sides)"
    )
    return (
        f"replayed {numbers['total']} stored requests against {target.base_url}: {identical}, "
        f"{numbers[DIFFERENT]} different, {numbers[ERROR_REPLAYED]} failed on replay, "
        f"{numbers[ERROR_STORED]} had failed in the log, {numbers[BOTH_ERROR]} failed on both, "
        f"{numbers[SKIPPED]} skipped (no route)\n{latency}\n"
    )
