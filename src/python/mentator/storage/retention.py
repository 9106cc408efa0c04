"""Retention: core and chat log rows older than ``log.liveDay`` days are deleted at start and
then hourly (the original cleaned the core log only; port.md: chat logs obey retention too)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mentator.logging_protocol import LoggerProtocol
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import DB_PIPE, StorageError
from mentator.storage.shadowlog import ShadowLogStore

DAY_MS = 24 * 60 * 60 * 1000
RETENTION_INTERVAL_S = 60 * 60


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Retention:
    """Deletes old rows of both logs; `run` is what the service calls on its schedule."""

    def __init__(
        self,
        core: CoreLogStore | None,
        chat: ChatLogStore | None,
        live_day: int,
        logger: LoggerProtocol,
        clock_ms: Callable[[], int] = _now_ms,
        *,
        shadow: ShadowLogStore | None = None,
    ) -> None:
        self._core = core
        self._chat = chat
        self._live_day = live_day
        self._logger = logger
        self._clock_ms = clock_ms
        self._shadow = shadow

    def run(self, now_ms: int | None = None) -> tuple[int, int]:
        """Delete rows older than liveDay days; return the (core, chat) counts. A failure is
        logged and the next run tries again."""
        cutoff = (self._clock_ms() if now_ms is None else now_ms) - self._live_day * DAY_MS
        removed_core = removed_chat = 0
        try:
            if self._core is not None:
                removed_core = self._core.purge_older_than(cutoff)
            if self._chat is not None:
                removed_chat = self._chat.purge_older_than(cutoff)
            if self._shadow is not None:  # shadow comparisons: kept as long as the logs
                self._shadow.purge_older_than(cutoff)
        except StorageError as err:
            self._logger.error(DB_PIPE, f"retention failed: {err}")
            return removed_core, removed_chat
        if removed_core or removed_chat:
            self._logger.debug(
                DB_PIPE,
                f"retention: deleted {removed_core} core log and {removed_chat} chat log records"
                f" older than {self._live_day} days",
            )
        return removed_core, removed_chat
