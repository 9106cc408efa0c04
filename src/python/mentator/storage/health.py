"""The one record of whether the database works, which `/health` reads.

`Database` reports every unit of work here (a failure, or a success that clears it), and the
service records an open failure, so no route or store has to remember to report anything.
"""

from __future__ import annotations

import threading
import time


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StorageHealth:
    """Open failure + the last failed operation (cleared by the next success). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open_error: str | None = None
        self.last_db_failure: str | None = None
        self.last_db_failure_ms: int | None = None

    def unavailable(self, why: str) -> None:
        """The database could not be opened: the service runs without it."""
        with self._lock:
            self.open_error = why
            self.last_db_failure = why
            self.last_db_failure_ms = _now_ms()

    def db_failed(self, message: str, now_ms: int | None = None) -> None:
        with self._lock:
            self.last_db_failure = message
            self.last_db_failure_ms = _now_ms() if now_ms is None else now_ms

    def db_succeeded(self) -> None:
        if self.last_db_failure is None:
            return
        with self._lock:
            self.last_db_failure = None
            self.last_db_failure_ms = None

    def problem(self) -> str | None:
        """What `/health` says about the database, or None when it works."""
        if self.open_error is not None:
            return f"database unavailable: {self.open_error}"
        if self.last_db_failure is not None:
            return f"database write failed: {self.last_db_failure}"
        return None
