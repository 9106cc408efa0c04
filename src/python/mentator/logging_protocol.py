"""The logger shape that library code depends on.

Modules below the API (model registry, engine, scheduling) log through this protocol instead of
importing the concrete ``AppLogger``: tests pass a small recorder, the service passes the real
logger, and no module needs a global.
"""

from __future__ import annotations

from typing import Protocol


class LoggerProtocol(Protocol):
    """Three levels, each with a pipe (``"MANAGER.MODEL"``, ``"APP"``...) and an optional extra."""

    def error(self, pipe: str, message: str, extra: str | None = None) -> None: ...

    def debug(self, pipe: str, message: str, extra: str | None = None) -> None: ...

    def trace(self, pipe: str, message: str, extra: str | None = None) -> None: ...
