"""Database file: pragmas, schema versions, adopting the original's database, error recovery."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import SCHEMA_VERSION, Database, StorageError

# The original service's DDL before it added promptExtra.answerRaw (reference §3).
ORIGINAL_DDL = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, pipe TEXT NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_log_ts ON log(ts);
CREATE TABLE IF NOT EXISTS logExtra (
    id INTEGER NOT NULL, data TEXT NOT NULL,
    FOREIGN KEY (id) REFERENCES log(id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS prompt (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, durationPromptMsec INTEGER NOT NULL,
    durationQueueMsec INTEGER NOT NULL, code INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_prompt_ts ON prompt(ts);
CREATE TABLE IF NOT EXISTS promptExtra (
    id INTEGER PRIMARY KEY, request TEXT NOT NULL, response TEXT NOT NULL,
    FOREIGN KEY (id) REFERENCES prompt(id));
"""


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_new_database_has_schema_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "m.db"
    db = Database(path)
    assert path.exists()
    assert db.pragma("journal_mode") == "wal"
    assert db.pragma("busy_timeout") == 5000
    assert db.pragma("user_version") == SCHEMA_VERSION
    db.close()
    assert columns(path, "log") == ["id", "ts", "pipe", "kind", "message"]
    assert columns(path, "logExtra") == ["id", "data"]
    assert columns(path, "prompt") == [
        "id",
        "ts",
        "durationPromptMsec",
        "durationQueueMsec",
        "code",
    ]
    assert columns(path, "promptExtra") == ["id", "request", "response", "answerRaw"]
    with sqlite3.connect(path) as conn:
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert {"idx_log_ts", "idx_prompt_ts", "idx_logExtra_id"} <= indexes


def test_adopts_database_of_the_original_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "orig.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(ORIGINAL_DDL)
        conn.execute(
            "INSERT INTO log (ts, pipe, kind, message) VALUES (1000, 'APP', 'debug', 'APP START')"
        )
        conn.execute("INSERT INTO logExtra (id, data) VALUES (1, 'extra text')")
        conn.execute(
            "INSERT INTO prompt (ts, durationPromptMsec, durationQueueMsec, code)"
            " VALUES (2000, 5, 6, 400)"
        )
        conn.execute(
            "INSERT INTO promptExtra (id, request, response) VALUES (1, '{\"a\":1}', '{\"e\":2}')"
        )
    assert columns(path, "promptExtra") == ["id", "request", "response"]

    db = Database(path)
    assert db.pragma("user_version") == SCHEMA_VERSION
    assert "answerRaw" in columns(path, "promptExtra")
    core = CoreLogStore(db).after_id(0, 10)
    assert core == [
        {
            "id": 1,
            "ts": 1000,
            "pipe": "APP",
            "kind": "debug",
            "message": "APP START",
            "extra": "extra text",
        }
    ]
    chat = ChatLogStore(db).after_id(0, 10)
    assert chat == [
        {
            "id": 1, "ts": 2000, "code": 400, "durationPromptMsec": 5, "durationQueueMsec": 6,
            "request": '{"a":1}', "response": '{"e":2}', "answerRaw": "",
        }
    ]  # fmt: skip
    # new rows continue the old ids
    assert CoreLogStore(db).write(3000, "APP", "debug", "again", None) == 2
    db.close()
    # reopening a current database is a no-op
    db = Database(path)
    assert len(CoreLogStore(db).after_id(0, 10)) == 2
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer than this program knows"):
        Database(path)


def test_unopenable_path_is_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        Database(blocker / "m.db")
    with pytest.raises(StorageError):
        Database(tmp_path)  # a folder is not a database file


def test_failure_is_per_call_and_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = Database(path)
    store = CoreLogStore(db)
    store.write(1, "P", "debug", "first", None)
    with sqlite3.connect(path) as other:
        other.execute("ALTER TABLE log RENAME TO log_hidden")
    with pytest.raises(StorageError, match="database error on save log: no such table: log"):
        store.write(2, "P", "debug", "fails", None)
    with sqlite3.connect(path) as other:
        other.execute("ALTER TABLE log_hidden RENAME TO log")
    store.write(3, "P", "debug", "works again", None)
    assert [row["message"] for row in store.after_id(0, 10)] == ["works again", "first"]
    db.close()


def test_concurrent_writers_share_one_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    store = CoreLogStore(db)

    def writer(n: int) -> None:
        for i in range(50):
            store.write(i, f"T{n}", "trace", f"{n}-{i}", "x" if i % 2 else None)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.by_range(0, 100)) == 400
    db.close()
