"""The core (application) log: tables `log` + `logExtra` (reference §3, §2.9)."""

from __future__ import annotations

import sqlite3

from mentator.storage.database import Database

MAX_EXTRA_CHARS = 500
MAX_PAGE = 200

# The first extra row of each log row (logExtra has no key, so "first" = lowest rowid).
_SELECT = """
    SELECT log.id, log.ts, log.pipe, log.kind, log.message,
           (SELECT data FROM logExtra WHERE logExtra.id = log.id ORDER BY logExtra.rowid LIMIT 1)
    FROM log
"""


def truncate_extra(extra: str | None) -> str | None:
    """The extra text as stored and printed: at most 500 characters + "...", None when empty."""
    if not extra:
        return None
    return extra if len(extra) <= MAX_EXTRA_CHARS else extra[:MAX_EXTRA_CHARS] + "..."


def clamp_limit(limit: int) -> int:
    """Page size for `after_id`: 1..200 (the original let -1 mean "unlimited")."""
    return max(1, min(MAX_PAGE, limit))


def _row(row: sqlite3.Row | tuple[object, ...]) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": row[0],
        "ts": row[1],
        "pipe": row[2],
        "kind": row[3],
        "message": row[4],
    }
    if row[5] is not None:
        entry["extra"] = row[5]
    return entry


class CoreLogStore:
    """Reads and writes the core log. Methods raise StorageError; they never disable the store."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def write(self, ts_ms: int, pipe: str, kind: str, message: str, extra: str | None) -> int:
        """Store one log line (+ its truncated extra); return the new id."""
        stored_extra = truncate_extra(extra)
        with self._db.session("save log") as conn:
            cursor = conn.execute(
                "INSERT INTO log (ts, pipe, kind, message) VALUES (?, ?, ?, ?)",
                (ts_ms, pipe, kind, message),
            )
            log_id = int(cursor.lastrowid or 0)
            if stored_extra is not None:
                conn.execute(
                    "INSERT INTO logExtra (id, data) VALUES (?, ?)", (log_id, stored_extra)
                )
        return log_id

    def after_id(self, after_id: int, limit: int) -> list[dict[str, object]]:
        """Rows with id > after_id, newest first, at most `limit` (clamped to 1..200).

        FIX of reference §2.9: the original took the NEWEST `limit` rows, so when more than
        `limit` rows were new the older ones were never shown. Here the page is the OLDEST
        `limit` rows after `after_id` (ordered newest first, as before); a client that passes
        the largest id it has seen as the next afterId walks through every row.
        """
        with self._db.session("get core logs") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE log.id > ? ORDER BY log.id ASC LIMIT ?",
                (after_id, clamp_limit(limit)),
            ).fetchall()
        return [_row(row) for row in reversed(rows)]

    def newest(self, limit: int) -> list[dict[str, object]]:
        """The newest `limit` rows (clamped to 1..200), newest first: the tail a log page opens
        with (reference §2.9: a page opened on a big database shows the tail)."""
        with self._db.session("get core logs") as conn:
            rows = conn.execute(
                f"{_SELECT} ORDER BY log.id DESC LIMIT ?", (clamp_limit(limit),)
            ).fetchall()
        return [_row(row) for row in rows]

    def by_range(self, start_ms: int, end_ms: int) -> list[dict[str, object]]:
        """Rows with start_ms <= ts < end_ms, by id ascending."""
        with self._db.session("get core logs by date") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE log.ts >= ? AND log.ts < ? ORDER BY log.id ASC",
                (start_ms, end_ms),
            ).fetchall()
        return [_row(row) for row in rows]

    def purge_older_than(self, ts_ms: int) -> int:
        """Delete rows with ts < ts_ms (and their extras); return how many log rows went."""
        with self._db.session("cleanup old logs") as conn:
            conn.execute(
                "DELETE FROM logExtra WHERE id IN (SELECT id FROM log WHERE ts < ?)", (ts_ms,)
            )
            cursor = conn.execute("DELETE FROM log WHERE ts < ?", (ts_ms,))
            return int(cursor.rowcount)
