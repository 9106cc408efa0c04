"""The application logger: console lines + rows in the core log table (reference §3).

Console format (as the original): `[<ISO UTC time>] [<level>] [<pipe>] <message>`, then the
extra text (truncated to 500 characters + "...") on following lines indented 8 spaces; errors go
to stderr, the rest to stdout. Level `error` keeps errors only, `debug` adds debug, `trace` all.

FIX of reference §3 "Error handling": a database failure is reported on stderr (once per distinct
message, so a broken disk does not flood the console) and the next call simply tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from mentator.config.settings import LogLevel
from mentator.storage.corelog import CoreLogStore, truncate_extra
from mentator.storage.database import DB_PIPE, StorageError

_RANK: dict[str, int] = {"error": 0, "debug": 1, "trace": 2}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_utc(ts_ms: int) -> str:
    """JavaScript's `Date.toISOString()`: `2026-05-01T12:00:00.000Z`."""
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


class AppLogger:
    """Thread-safe logger; `store` None = console only (e.g. the database could not be opened)."""

    def __init__(
        self,
        store: CoreLogStore | None,
        level: LogLevel,
        stream_out: TextIO,
        stream_err: TextIO,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._level = level
        self._out = stream_out
        self._err = stream_err
        self._clock = clock
        self._console_lock = threading.Lock()
        self._reported_errors: set[str] = set()

    def attach_store(self, store: CoreLogStore) -> None:
        """Start writing to the database (opened late, after a failed first try)."""
        self._store = store

    @property
    def level(self) -> LogLevel:
        return self._level

    def enabled(self, level: LogLevel) -> bool:
        return _RANK[level] <= _RANK[self._level]

    def error(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._log("error", pipe, message, extra)

    def debug(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._log("debug", pipe, message, extra)

    def trace(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._log("trace", pipe, message, extra)

    def _log(self, level: LogLevel, pipe: str, message: str, extra: str | None) -> None:
        if not self.enabled(level):
            return
        ts = self._clock()
        self._print(level, ts, pipe, message, truncate_extra(extra))
        if self._store is None:
            return
        try:
            self._store.write(ts, pipe, level, message, extra)
        except StorageError as err:
            self._report_storage_error(str(err))
        else:
            self._storage_recovered()

    def _print(self, level: LogLevel, ts: int, pipe: str, message: str, extra: str | None) -> None:
        lines = [f"[{iso_utc(ts)}] [{level}] [{pipe}] {message}"]
        if extra:
            lines.extend(f"        {line}" for line in extra.split("\n"))
        stream = self._err if level == "error" else self._out
        with self._console_lock:
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def _report_storage_error(self, text: str) -> None:
        """Print a database failure to stderr only; writing it to the failing DB would recurse."""
        with self._console_lock:
            if text in self._reported_errors:
                return
            self._reported_errors.add(text)
        self._print("error", self._clock(), DB_PIPE, text, None)

    def _storage_recovered(self) -> None:
        """After a success, a recurring failure is worth printing again."""
        if self._reported_errors:
            with self._console_lock:
                self._reported_errors.clear()
