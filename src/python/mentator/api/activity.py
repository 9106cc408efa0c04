"""The last hour of activity, one bucket per minute, for the stat page's charts
(`GET /state/activity`, drawn by ``ui/stat-charts.js``).

Fed by the same reports as the Prometheus metrics (`ApiMetrics.exchange_ended` hands each
`ExchangeReport` on), so the page's totals are the metrics' totals: a request is counted once, in
the minute it ended, by outcome; its generated tokens likewise; its latency and time to the first
token (answered requests only) go into that minute's percentiles. Queue depth is sampled (every
`SAMPLE_INTERVAL_S` by the server, and at each read): a minute shows the most requests seen
waiting and running. Older days come from the chat log (`ChatLogStore.hourly`), not from here:
this history lives in memory and starts empty with the process.

Memory is bounded: `MINUTES` buckets, and at most `MAX_SAMPLES` latencies per bucket (past that,
a minute's percentiles are of its first `MAX_SAMPLES` requests; the counts stay exact).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mentator.inference.exchange import SUCCESS_OUTCOME, ExchangeReport

MINUTE_MS = 60_000
MINUTES = 60
MAX_SAMPLES = 10_000
SAMPLE_INTERVAL_S = 2.0


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1, as the chat log's p95); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class MinuteBucket:
    """What ended (and what the queue held) in one minute."""

    start_ms: int
    outcomes: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    latencies_s: list[float] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    waiting: int | None = None  # most requests seen waiting (None: never sampled)
    running: int | None = None

    def to_json(self, now_ms: int) -> dict[str, Any]:
        # The current minute's rate is over the part of it that has passed.
        seconds = max(1.0, min(MINUTE_MS, now_ms - self.start_ms) / 1000)
        return {
            "start": self.start_ms,
            "requests": dict(sorted(self.outcomes.items())),
            "tokens": self.tokens,
            "tokensPerSecond": round(self.tokens / seconds, 3),
            "latencyP50": _rounded(nearest_rank(self.latencies_s, 0.5)),
            "latencyP95": _rounded(nearest_rank(self.latencies_s, 0.95)),
            "firstTokenP50": _rounded(nearest_rank(self.first_token_s, 0.5)),
            "firstTokenP95": _rounded(nearest_rank(self.first_token_s, 0.95)),
            "queueWaiting": self.waiting,
            "queueRunning": self.running,
        }


class Activity:
    """Per-minute buckets of the last `MINUTES` minutes (thread-safe: the server's sampler runs
    in a thread, the reports come from the event loop)."""

    def __init__(self, clock_ms: Callable[[], int], minutes: int = MINUTES) -> None:
        self._clock_ms = clock_ms
        self._minutes = minutes
        self._buckets: dict[int, MinuteBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, now_ms: int) -> MinuteBucket:
        start = now_ms - now_ms % MINUTE_MS
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = MinuteBucket(start)
            oldest = start - (self._minutes - 1) * MINUTE_MS
            for old in [key for key in self._buckets if key < oldest]:
                del self._buckets[old]
        return bucket

    def exchange_ended(self, report: ExchangeReport) -> None:
        with self._lock:
            bucket = self._bucket(self._clock_ms())
            bucket.outcomes[report.outcome] += 1
            bucket.tokens += report.tokens or 0
            if report.outcome != SUCCESS_OUTCOME or len(bucket.latencies_s) >= MAX_SAMPLES:
                return
            duration = report.duration
            bucket.latencies_s.append((duration.prompt_msec + duration.queue_msec) / 1000)
            if report.first_token_s is not None:
                bucket.first_token_s.append(report.first_token_s)

    def sample(self, waiting: int, running: int) -> None:
        """One look at the queue: the minute keeps the highest counts seen."""
        with self._lock:
            bucket = self._bucket(self._clock_ms())
            bucket.waiting = max(waiting, bucket.waiting or 0)
            bucket.running = max(running, bucket.running or 0)

    def to_json(self) -> dict[str, Any]:
        """The last `MINUTES` minutes, oldest first, every minute present (an empty one has zero
        requests and no percentiles), and the hour's totals."""
        with self._lock:
            now = self._clock_ms()
            current = now - now % MINUTE_MS
            minutes = []
            totals: Counter[str] = Counter()
            tokens = 0
            for index in range(self._minutes - 1, -1, -1):
                start = current - index * MINUTE_MS
                bucket = self._buckets.get(start) or MinuteBucket(start)
                minutes.append(bucket.to_json(now))
                totals.update(bucket.outcomes)
                tokens += bucket.tokens
        return {
            "now": now,
            "minuteMs": MINUTE_MS,
            "minutes": minutes,
            "totals": {
                "requests": dict(sorted(totals.items())),
                "requestCount": sum(totals.values()),
                "tokens": tokens,
            },
        }
