"""The database reports every unit of work to its StorageHealth: /health's one source."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database, StorageError
from mentator.storage.health import StorageHealth


def test_a_failed_operation_is_recorded_and_the_next_success_clears_it(tmp_path: Path) -> None:
    health = StorageHealth()
    database = Database(tmp_path / "h.db", health)
    store = CoreLogStore(database)
    store.write(1, "P", "debug", "ok", None)
    assert health.problem() is None
    with sqlite3.connect(database.path) as other:
        other.execute("ALTER TABLE log RENAME TO hidden")
    with pytest.raises(StorageError):
        store.write(2, "P", "debug", "lost", None)
    problem = health.problem()
    assert problem is not None and problem.startswith("database write failed: ")
    assert "no such table: log" in problem
    with sqlite3.connect(database.path) as other:
        other.execute("ALTER TABLE hidden RENAME TO log")
    store.write(3, "P", "debug", "back", None)
    assert health.problem() is None
    database.close()


def test_an_open_failure_stays_the_problem() -> None:
    health = StorageHealth()
    health.unavailable("cannot open database")
    health.db_succeeded()
    assert health.problem() == "database unavailable: cannot open database"
