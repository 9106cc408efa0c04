"""A logger (`mentator.logging_protocol.LoggerProtocol`) that records lines for assertions."""

from __future__ import annotations

import threading


class RecordingLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.extras: list[str | None] = []  # each line's extra, in the same order
        self._lock = threading.Lock()

    def _add(self, level: str, pipe: str, message: str, extra: str | None) -> None:
        with self._lock:
            self.lines.append((level, pipe, message))
            self.extras.append(extra)

    def error(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._add("error", pipe, message, extra)

    def debug(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._add("debug", pipe, message, extra)

    def trace(self, pipe: str, message: str, extra: str | None = None) -> None:
        self._add("trace", pipe, message, extra)

    def messages(self, level: str) -> list[str]:
        return [message for lvl, _pipe, message in self.lines if lvl == level]
