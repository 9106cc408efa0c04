"""The SQLite file: one connection, serialised by a lock, schema versioned by `user_version`.

Reference §3: WAL journal, busy_timeout 5000 ms, tables `log`, `logExtra`, `prompt`,
`promptExtra`. Unlike the original, a failing operation raises `StorageError` for that call only;
the connection stays usable, so the next call simply tries again (the original turned every later
operation into a no-op for the life of the process).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mentator.storage.health import StorageHealth

# The log pipe of everything about the database (reference §3), for every layer that reports it.
DB_PIPE = "DB"


class StorageError(Exception):
    """A database operation failed; the message says which one and why."""


# Version 1 is the original service's schema, statement for statement (IF NOT EXISTS lets it
# adopt a database the original created), plus `promptExtra.answerRaw`, which the original also
# added by migration when missing.
_V1_TABLES = (
    """CREATE TABLE IF NOT EXISTS log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        pipe TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_log_ts ON log(ts)",
    """CREATE TABLE IF NOT EXISTS logExtra (
        id INTEGER NOT NULL,
        data TEXT NOT NULL,
        FOREIGN KEY (id) REFERENCES log(id) ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS prompt (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        durationPromptMsec INTEGER NOT NULL,
        durationQueueMsec INTEGER NOT NULL,
        code INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_prompt_ts ON prompt(ts)",
    """CREATE TABLE IF NOT EXISTS promptExtra (
        id INTEGER PRIMARY KEY,
        request TEXT NOT NULL,
        response TEXT NOT NULL,
        answerRaw TEXT,
        FOREIGN KEY (id) REFERENCES prompt(id)
    )""",
)


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1_TABLES:
        conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(promptExtra)")}
    if "answerRaw" not in columns:  # a database of an original version before answerRaw
        conn.execute("ALTER TABLE promptExtra ADD COLUMN answerRaw TEXT")


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    # logExtra has no key; every row's extra is looked up by id, which scanned the whole table.
    conn.execute("CREATE INDEX IF NOT EXISTS idx_logExtra_id ON logExtra(id)")


def _migrate_to_v3(conn: sqlite3.Connection) -> None:
    # Shadow traffic's comparisons (`storage.shadowlog`): one row per copy sent.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS shadow (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts INTEGER NOT NULL,
            route TEXT NOT NULL,
            outcome TEXT NOT NULL,
            primaryCode INTEGER NOT NULL,
            shadowCode INTEGER NOT NULL,
            primaryMsec INTEGER NOT NULL,
            shadowMsec INTEGER NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS idx_shadow_ts ON shadow(ts)")


# Ordered; index i migrates from version i to i + 1. Only ever append: a migration may add
# tables, columns and indexes, never drop rows.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_to_v1,
    _migrate_to_v2,
    _migrate_to_v3,
)
SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """The open database file. Thread-safe: every use goes through `session()` and its lock.

    Every unit of work is reported to ``health`` (a failure, or a success that clears it).
    """

    def __init__(self, path: Path, health: StorageHealth | None = None) -> None:
        self.path = path
        self.health = health or StorageHealth()
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f'cannot create the folder of database "{path}": {err}') from None
        try:
            # isolation_level=None: no implicit transactions; session() issues BEGIN/COMMIT.
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=5.0
            )
        except sqlite3.Error as err:
            raise StorageError(f'cannot open database "{path}": {err}') from None
        try:
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: no corruption on power loss, only the last commits may be lost; one
            # fsync per log line (FULL) would make logging the slowest part of a request.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (sqlite3.Error, StorageError) as err:
            self._conn.close()
            raise StorageError(f'failed to initialize database in file "{path}": {err}') from None

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"its schema version {version} is newer than this program knows"
                    f" ({SCHEMA_VERSION});"
                    " run a newer mentator-llm-service or point dbFile at another file"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    MIGRATIONS[target - 1](self._conn)
                    self._conn.execute(f"PRAGMA user_version = {target}")
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def session(self, action: str) -> Iterator[sqlite3.Connection]:
        """Run a unit of work in one transaction; any sqlite3 error becomes StorageError.

        `action` names the operation for the message, e.g. "save log".
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN")
            except sqlite3.Error as err:
                raise self._failed(action, f"database error on {action}: {err}") from None
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise self._failed(action, f"database error on {action}: {err}") from None
            except BaseException:
                self._rollback()
                raise
        self.health.db_succeeded(action)

    def _failed(self, action: str, message: str) -> StorageError:
        self.health.db_failed(message, action=action)
        return StorageError(message)

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back (e.g. COMMIT itself failed and ended it)

    def pragma(self, name: str) -> object:
        """Read one PRAGMA value (tests and diagnostics: journal_mode, user_version, ...)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            row = self._conn.execute(f"PRAGMA {name}").fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
