"""AppLogger: console format, levels, database rows, database failures."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mentator.applog import AppLogger, iso_utc
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database

T0 = 1_767_323_045_123  # 2026-01-02T03:04:05.123Z


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "m.db")
    yield database
    database.close()


def make(
    store: CoreLogStore | None, level: str = "debug", **kwargs: object
) -> tuple[AppLogger, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    logger = AppLogger(store, level, out, err, lambda: T0, **kwargs)  # type: ignore[arg-type]
    return logger, out, err


def test_iso_utc_matches_javascript() -> None:
    assert iso_utc(T0) == "2026-01-02T03:04:05.123Z"
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_console_lines_and_streams(db: Database) -> None:
    logger, out, err = make(CoreLogStore(db))
    logger.debug("APP", "APP START")
    logger.error("API", "boom", "line1\nline2")
    logger.trace("APP", "hidden at debug level")
    assert out.getvalue() == "[2026-01-02T03:04:05.123Z] [debug] [APP] APP START\n"
    assert (
        err.getvalue()
        == "[2026-01-02T03:04:05.123Z] [error] [API] boom\n        line1\n        line2\n"
    )


def test_console_extra_is_truncated(db: Database) -> None:
    logger, out, _ = make(CoreLogStore(db))
    logger.debug("APP", "m", "y" * 501)
    assert out.getvalue().splitlines()[1] == "        " + "y" * 500 + "..."


@pytest.mark.parametrize(
    ("level", "kinds"),
    [("error", ["error"]), ("debug", ["debug", "error"]), ("trace", ["trace", "debug", "error"])],
)
def test_levels_decide_what_is_stored(db: Database, level: str, kinds: list[str]) -> None:
    store = CoreLogStore(db)
    logger, _, _ = make(store, level)
    logger.error("P", "e")
    logger.debug("P", "d")
    logger.trace("P", "t")
    assert [row["kind"] for row in store.after_id(0, 10)] == kinds


def test_rows_carry_clock_time_and_extra(db: Database) -> None:
    store = CoreLogStore(db)
    logger, _, _ = make(store)
    logger.debug("MANAGER.MODEL", 'add model(s): "a";', "x" * 700)
    (row,) = store.after_id(0, 10)
    assert row["ts"] == T0 and row["pipe"] == "MANAGER.MODEL"
    assert row["extra"] == "x" * 500 + "..."


def test_database_failure_is_reported_once_and_retried(db: Database) -> None:
    store = CoreLogStore(db)
    logger, out, err = make(store)
    with sqlite3.connect(db.path) as other:
        other.execute("ALTER TABLE log RENAME TO hidden")
    logger.debug("APP", "one")
    logger.debug("APP", "two")
    assert out.getvalue().count("[debug] [APP]") == 2  # the console keeps working
    reports = [line for line in err.getvalue().splitlines() if "[DB]" in line]
    assert reports == [
        "[2026-01-02T03:04:05.123Z] [error] [DB] database error on save log: no such table: log"
    ]
    with sqlite3.connect(db.path) as other:
        other.execute("ALTER TABLE hidden RENAME TO log")
    logger.debug("APP", "three")
    assert [row["message"] for row in store.after_id(0, 10)] == ["three"]
    # after recovery, the same failure is worth reporting again
    with sqlite3.connect(db.path) as other:
        other.execute("ALTER TABLE log RENAME TO hidden")
    logger.debug("APP", "four")
    assert err.getvalue().count("[DB]") == 2


def test_without_store_logs_to_console_only() -> None:
    logger, out, err = make(None)
    logger.debug("APP", "x")
    logger.error("APP", "y")
    assert "x" in out.getvalue() and "y" in err.getvalue()
