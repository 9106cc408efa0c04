"""Retention: core and chat log rows older than liveDay days go, at start and hourly.

(Moved from the AppLogger tests with retention itself; the assertions are the same.)"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from mentator.applog import AppLogger
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database
from mentator.storage.retention import DAY_MS, Retention

T0 = 1_767_323_045_123  # 2026-01-02T03:04:05.123Z


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "m.db")
    yield database
    database.close()


def test_without_stores_nothing_to_delete() -> None:
    logger = AppLogger(None, "debug", io.StringIO(), io.StringIO(), lambda: T0)
    assert Retention(None, None, 30, logger).run(T0) == (0, 0)


def test_retention_deletes_old_core_and_chat_rows(db: Database) -> None:
    core, chat = CoreLogStore(db), ChatLogStore(db)
    now = T0
    core.write(now - 3 * DAY_MS - 1, "P", "debug", "old", "e")
    core.write(now - 3 * DAY_MS + 1, "P", "debug", "young", None)
    chat.write(now - 4 * DAY_MS, 500, 1, 1, "{}", "{}", None)
    chat.write(now - DAY_MS, 500, 1, 1, "{}", "{}", None)
    out = io.StringIO()
    logger = AppLogger(core, "debug", out, io.StringIO(), lambda: T0)
    retention = Retention(core, chat, 3, logger)
    assert retention.run(now) == (1, 1)
    assert [row["message"] for row in core.after_id(0, 10)][-1] == "young"
    assert len(chat.after_id(0, 10)) == 1
    assert (
        "retention: deleted 1 core log and 1 chat log records older than 3 days" in out.getvalue()
    )
    assert retention.run(now) == (0, 0)
