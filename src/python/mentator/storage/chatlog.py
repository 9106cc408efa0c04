"""The chat log: tables `prompt` + `promptExtra` (reference §3, §2.8, §2.9)."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mentator.storage.corelog import clamp_limit
from mentator.storage.database import Database, StorageError

_SELECT = """
    SELECT prompt.id, prompt.ts, prompt.code, prompt.durationPromptMsec, prompt.durationQueueMsec,
           promptExtra.id, promptExtra.request, promptExtra.response, promptExtra.answerRaw
    FROM prompt LEFT JOIN promptExtra ON promptExtra.id = prompt.id
"""

STAT_KEYS = (
    "total",
    "success",
    "failed",
    "avgPromptDuration",
    "avgQueueDuration",
    "p95PromptDuration",
    "p95QueueDuration",
)


def _row(row: tuple[object, ...]) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": row[0],
        "ts": row[1],
        "code": row[2],
        "durationPromptMsec": row[3],
        "durationQueueMsec": row[4],
    }
    if row[5] is not None:  # the original omitted these when the extra row is missing
        entry["request"] = row[6]
        entry["response"] = row[7]
        entry["answerRaw"] = row[8] if row[8] is not None else ""
    return entry


def nearest_rank_p95(values: list[int]) -> int:
    """95th percentile by nearest rank: sorted ascending, index ceil(n * 0.95) - 1; 0 if empty."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)]


def _round_half_up(value: float) -> int:
    """JavaScript's Math.round, which the original used (halves round towards +infinity)."""
    return math.floor(value + 0.5)


class ChatLogStore:
    """Reads and writes /prompt exchanges. Methods raise StorageError; they never disable it."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def write(
        self,
        ts_ms: int,
        code: int,
        prompt_ms: int,
        queue_ms: int,
        request_json: str,
        response_json: str,
        answer_raw: str | None,
    ) -> int:
        """Store one exchange; return its id."""
        with self._db.session("save prompt") as conn:
            cursor = conn.execute(
                "INSERT INTO prompt (ts, durationPromptMsec, durationQueueMsec, code)"
                " VALUES (?, ?, ?, ?)",
                (ts_ms, int(prompt_ms), int(queue_ms), code),
            )
            prompt_id = int(cursor.lastrowid or 0)
            conn.execute(
                "INSERT INTO promptExtra (id, request, response, answerRaw) VALUES (?, ?, ?, ?)",
                (prompt_id, request_json, response_json, answer_raw),
            )
        return prompt_id

    def after_id(self, after_id: int, limit: int) -> list[dict[str, object]]:
        """Rows with id > after_id, newest first; the OLDEST `limit` of them (see CoreLogStore)."""
        with self._db.session("get chat logs") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE prompt.id > ? ORDER BY prompt.id ASC LIMIT ?",
                (after_id, clamp_limit(limit)),
            ).fetchall()
        return [_row(row) for row in reversed(rows)]

    def newest(self, limit: int) -> list[dict[str, object]]:
        """The newest `limit` rows (clamped to 1..200), newest first (see CoreLogStore)."""
        with self._db.session("get chat logs") as conn:
            rows = conn.execute(
                f"{_SELECT} ORDER BY prompt.id DESC LIMIT ?", (clamp_limit(limit),)
            ).fetchall()
        return [_row(row) for row in rows]

    def by_range(self, start_ms: int, end_ms: int) -> list[dict[str, object]]:
        """Rows with start_ms <= ts < end_ms, by id ascending."""
        with self._db.session("get chat logs by date") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE prompt.ts >= ? AND prompt.ts < ? ORDER BY prompt.id ASC",
                (start_ms, end_ms),
            ).fetchall()
        return [_row(row) for row in rows]

    def delete_all(self) -> int:
        """Empty both chat tables; return how many `prompt` rows there were."""
        with self._db.session("clear chat logs") as conn:
            count = int(conn.execute("SELECT COUNT(*) FROM prompt").fetchone()[0])
            conn.execute("DELETE FROM promptExtra")
            conn.execute("DELETE FROM prompt")
        return count

    def purge_older_than(self, ts_ms: int) -> int:
        """Delete exchanges with ts < ts_ms; return how many went.

        FIX of reference §8.10: the original never cleaned the chat log; it now follows liveDay.
        """
        with self._db.session("cleanup old chat logs") as conn:
            conn.execute(
                "DELETE FROM promptExtra WHERE id IN (SELECT id FROM prompt WHERE ts < ?)", (ts_ms,)
            )
            cursor = conn.execute("DELETE FROM prompt WHERE ts < ?", (ts_ms,))
            return int(cursor.rowcount)

    def stats(self, now_ms: int, window_ms: int) -> dict[str, int]:
        """Statistics of `/state` (reference §2.8) over rows with ts >= now_ms - window_ms.

        success = code 200, failed = any other code; avgPromptDuration over successes,
        avgQueueDuration over all rows (both rounded half up); p95 by nearest rank, prompt time
        over successes, queue time over all rows; every field 0 when there are no rows.
        """
        with self._db.session("get statistics") as conn:
            rows = conn.execute(
                "SELECT code, durationPromptMsec, durationQueueMsec FROM prompt WHERE ts >= ?",
                (now_ms - window_ms,),
            ).fetchall()
        success_prompt = [int(row[1]) for row in rows if row[0] == 200]
        queue = [int(row[2]) for row in rows]
        return {
            "total": len(rows),
            "success": len(success_prompt),
            "failed": len(rows) - len(success_prompt),
            "avgPromptDuration": _round_half_up(sum(success_prompt) / len(success_prompt))
            if success_prompt
            else 0,
            "avgQueueDuration": _round_half_up(sum(queue) / len(queue)) if queue else 0,
            "p95PromptDuration": nearest_rank_p95(success_prompt),
            "p95QueueDuration": nearest_rank_p95(queue),
        }

    def hourly(self, now_ms: int, hours: int = 24) -> list[dict[str, object]]:
        """The stat page's day chart: for each of the last ``hours`` whole hours up to now
        (oldest first; the last one is the current, partial hour), the requests the chat log
        holds by success (code 200) and failure, and the p50/p95 of the successes' whole time
        (queue plus prompt, milliseconds, nearest rank; None without successes). Successes are
        here only while ``log.savePrompt`` is on; failures always are."""
        hour = 3_600_000
        current = now_ms - now_ms % hour
        first = current - (hours - 1) * hour
        with self._db.session("get hourly statistics") as conn:
            rows = conn.execute(
                "SELECT ts, code, durationPromptMsec + durationQueueMsec FROM prompt"
                " WHERE ts >= ? AND ts < ?",
                (first, current + hour),
            ).fetchall()
        buckets: list[tuple[list[int], int]] = [([], 0) for _ in range(hours)]
        for ts, code, total_ms in rows:
            index = (int(ts) - first) // hour
            ok, failed = buckets[index]
            if code == 200:
                ok.append(int(total_ms))
            else:
                buckets[index] = (ok, failed + 1)
        return [
            {
                "start": first + index * hour,
                "success": len(ok),
                "failed": failed,
                "latencyP50Ms": _nearest_rank(ok, 0.5),
                "latencyP95Ms": _nearest_rank(ok, 0.95),
            }
            for index, (ok, failed) in enumerate(buckets)
        ]


def _nearest_rank(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


@dataclass(frozen=True)
class StoredExchange:
    """One chat-log row with its request body and the envelope that was answered."""

    id: int
    ts: int
    code: int
    prompt_ms: int
    queue_ms: int
    request: str
    response: str


def read_stored_exchanges(
    db_file: Path, since_ms: int | None = None, limit: int | None = None
) -> list[StoredExchange]:
    """The chat log's rows that hold a request body (ts >= ``since_ms``), oldest first.

    The file is opened read-only (SQLite ``mode=ro``): no migration and no write, so this is safe
    on the database of a running service or on a copy of an older version's file."""
    if not db_file.is_file():
        raise StorageError(f'no database file "{db_file}"')
    query = (
        "SELECT prompt.id, prompt.ts, prompt.code, prompt.durationPromptMsec,"
        " prompt.durationQueueMsec, promptExtra.request, promptExtra.response"
        " FROM prompt JOIN promptExtra ON promptExtra.id = prompt.id"
        " WHERE prompt.ts >= ? ORDER BY prompt.id ASC LIMIT ?"
    )
    try:
        conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute(query, (since_ms or 0, -1 if limit is None else limit)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise StorageError(f'cannot read the chat log of "{db_file}": {error}') from None
    return [
        StoredExchange(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]), str(r[6]))
        for r in rows
    ]
