"""The shadow table: one row per shadow copy that was sent (`replay.shadow`), with its outcome
(the replay's words: identical, different, error_replayed, error_stored, both_error), both
sides' status codes and times, and ``detail`` (JSON: the structural diff of a different answer,
or the error's text). Retention follows ``log.liveDay`` like the logs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mentator.storage.database import Database


@dataclass(frozen=True)
class ShadowRow:
    ts: int
    route: str
    outcome: str
    primary_code: int
    shadow_code: int
    primary_ms: int
    shadow_ms: int
    detail: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "route": self.route,
            "outcome": self.outcome,
            "primaryCode": self.primary_code,
            "shadowCode": self.shadow_code,
            "primaryMsec": self.primary_ms,
            "shadowMsec": self.shadow_ms,
            "detail": self.detail,
        }


class ShadowLogStore:
    """Writes and reads the shadow table. Methods raise StorageError."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def write(self, row: ShadowRow) -> int:
        with self._db.session("save shadow comparison") as conn:
            cursor = conn.execute(
                "INSERT INTO shadow (ts, route, outcome, primaryCode, shadowCode, primaryMsec,"
                " shadowMsec, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.ts,
                    row.route,
                    row.outcome,
                    row.primary_code,
                    row.shadow_code,
                    row.primary_ms,
                    row.shadow_ms,
                    json.dumps(row.detail, ensure_ascii=False),
                ),
            )
        return int(cursor.lastrowid or 0)

    def newest(self, limit: int = 100) -> list[ShadowRow]:
        """The newest ``limit`` rows, newest first."""
        with self._db.session("get shadow comparisons") as conn:
            rows = conn.execute(
                "SELECT ts, route, outcome, primaryCode, shadowCode, primaryMsec, shadowMsec,"
                " detail FROM shadow ORDER BY id DESC LIMIT ?",
                (max(1, limit),),
            ).fetchall()
        return [
            ShadowRow(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                json.loads(r[7]),
            )
            for r in rows
        ]

    def purge_older_than(self, ts_ms: int) -> int:
        with self._db.session("cleanup old shadow comparisons") as conn:
            return int(conn.execute("DELETE FROM shadow WHERE ts < ?", (ts_ms,)).rowcount)
