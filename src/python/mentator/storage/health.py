"""The one record of whether the database works, which `/health` reads.

`Database` reports every unit of work here under its action name ("save prompt", "save log",
...): a failure is kept until the same action succeeds again, so a broken chat-log table stays
visible while the core log still writes. The server records an open failure. No route or store
has to remember to report anything.
"""

from __future__ import annotations

import threading
import time


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StorageHealth:
    """Open failure + the failed actions not yet followed by a success. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open_error: str | None = None
        self._failures: dict[str, tuple[str, int]] = {}  # action → (message, when in ms)

    def unavailable(self, why: str) -> None:
        """The database could not be opened: the service runs without it."""
        with self._lock:
            self.open_error = why
            self._failures["open"] = (why, _now_ms())

    def opened(self) -> None:
        """The database could be opened after all (a retry at start): no longer unavailable."""
        with self._lock:
            self.open_error = None
            self._failures.pop("open", None)

    def db_failed(self, message: str, now_ms: int | None = None, action: str = "") -> None:
        with self._lock:
            self._failures[action] = (message, _now_ms() if now_ms is None else now_ms)

    def db_succeeded(self, action: str = "") -> None:
        if action in self._failures:
            with self._lock:
                self._failures.pop(action, None)

    @property
    def last_db_failure(self) -> str | None:
        """The most recent failure still outstanding (None when every action works)."""
        latest = self._latest()
        return latest[0] if latest else None

    @property
    def last_db_failure_ms(self) -> int | None:
        latest = self._latest()
        return latest[1] if latest else None

    def _latest(self) -> tuple[str, int] | None:
        with self._lock:
            return max(self._failures.values(), key=lambda item: item[1], default=None)

    def problem(self) -> str | None:
        """What `/health` says about the database, or None when it works."""
        if self.open_error is not None:
            return f"database unavailable: {self.open_error}"
        failure = self.last_db_failure
        return f"database write failed: {failure}" if failure is not None else None
