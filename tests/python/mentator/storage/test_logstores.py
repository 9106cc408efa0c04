"""Core and chat log stores: writes, paging without gaps, ranges, stats, retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mentator.storage.chatlog import ChatLogStore, nearest_rank_p95
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "m.db")
    yield database
    database.close()


def test_core_write_and_extra_truncation(db: Database) -> None:
    store = CoreLogStore(db)
    store.write(10, "APP", "debug", "no extra", None)
    store.write(11, "APP", "debug", "empty extra", "")
    store.write(12, "API", "error", "long", "x" * 600)
    rows = store.after_id(0, 200)
    assert [row["id"] for row in rows] == [3, 2, 1]
    assert "extra" not in rows[1] and "extra" not in rows[2]
    assert rows[0]["extra"] == "x" * 500 + "..."
    assert rows[0] == {
        "id": 3,
        "ts": 12,
        "pipe": "API",
        "kind": "error",
        "message": "long",
        "extra": "x" * 500 + "...",
    }


def test_core_paging_never_skips_rows(db: Database) -> None:
    store = CoreLogStore(db)
    for i in range(450):
        store.write(i, "P", "trace", f"m{i}", None)
    seen: list[int] = []
    after = 0
    while True:
        page = store.after_id(after, 200)
        if not page:
            break
        ids = [int(str(row["id"])) for row in page]
        assert ids == sorted(ids, reverse=True)  # newest first within a page
        seen.extend(ids)
        after = ids[0]
    assert sorted(seen) == list(range(1, 451))
    assert len(seen) == 450


def test_core_limit_is_clamped(db: Database) -> None:
    store = CoreLogStore(db)
    for i in range(250):
        store.write(i, "P", "trace", "m", None)
    assert len(store.after_id(0, 1000)) == 200
    assert len(store.after_id(0, -1)) == 1
    assert len(store.after_id(0, 0)) == 1
    assert [row["id"] for row in store.after_id(247, 10)] == [250, 249, 248]


def test_newest_is_the_tail(db: Database) -> None:
    core, chat = CoreLogStore(db), ChatLogStore(db)
    for i in range(250):
        core.write(i, "P", "trace", "m", None)
        chat.write(i, 200, 1, 1, "{}", "{}", None)
    assert [row["id"] for row in core.newest(3)] == [250, 249, 248]
    assert [row["id"] for row in chat.newest(2)] == [250, 249]
    assert len(core.newest(1000)) == 200 and core.newest(1000)[-1]["id"] == 51


def test_core_by_range_and_purge(db: Database) -> None:
    store = CoreLogStore(db)
    for ts in (100, 200, 300, 400):
        store.write(ts, "P", "debug", f"t{ts}", "e")
    assert [row["ts"] for row in store.by_range(200, 400)] == [200, 300]
    assert store.purge_older_than(300) == 2
    assert [row["ts"] for row in store.by_range(0, 1000)] == [300, 400]
    assert store.purge_older_than(300) == 0


def test_chat_write_read_delete(db: Database) -> None:
    store = ChatLogStore(db)
    first = store.write(1000, 200, 50, 5, '{"q":1}', '{"r":1}', "raw answer")
    second = store.write(2000, 400, 0, 7, '{"q":2}', '{"error":"x"}', None)
    assert (first, second) == (1, 2)
    rows = store.after_id(0, 200)
    assert rows[0] == {
        "id": 2, "ts": 2000, "code": 400, "durationPromptMsec": 0, "durationQueueMsec": 7,
        "request": '{"q":2}', "response": '{"error":"x"}', "answerRaw": "",
    }  # fmt: skip
    assert rows[1]["answerRaw"] == "raw answer"
    assert [row["id"] for row in store.by_range(1500, 2500)] == [2]
    assert store.delete_all() == 2
    assert store.after_id(0, 200) == []
    assert store.delete_all() == 0


def test_chat_paging_never_skips_rows(db: Database) -> None:
    store = ChatLogStore(db)
    for i in range(230):
        store.write(i, 200, i, i, "{}", "{}", None)
    first = store.after_id(0, 200)
    assert [row["id"] for row in first][:2] == [200, 199] and len(first) == 200
    rest = store.after_id(200, 200)
    assert [row["id"] for row in rest] == list(range(230, 200, -1))


def test_chat_retention(db: Database) -> None:
    store = ChatLogStore(db)
    store.write(100, 200, 1, 1, "{}", "{}", None)
    store.write(900, 500, 1, 1, "{}", "{}", None)
    assert store.purge_older_than(500) == 1
    assert [row["ts"] for row in store.after_id(0, 10)] == [900]


def test_nearest_rank_p95() -> None:
    assert nearest_rank_p95([]) == 0
    assert nearest_rank_p95([7]) == 7
    assert nearest_rank_p95(list(range(1, 21))) == 19  # ceil(20 * .95) - 1 = 18 -> 19
    assert nearest_rank_p95(list(range(100, 0, -1))) == 95
    assert nearest_rank_p95([1, 2, 3]) == 3


def test_chat_stats(db: Database) -> None:
    store = ChatLogStore(db)
    now = 10_000_000
    assert store.stats(now, 3_600_000) == {
        "total": 0, "success": 0, "failed": 0, "avgPromptDuration": 0, "avgQueueDuration": 0,
        "p95PromptDuration": 0, "p95QueueDuration": 0,
    }  # fmt: skip
    store.write(now - 7_200_000, 200, 99_999, 99_999, "{}", "{}", None)  # outside the 1 h window
    for prompt_ms in (10, 20, 31):
        store.write(now - 1000, 200, prompt_ms, 1, "{}", "{}", None)
    store.write(now - 1000, 400, 500, 2, "{}", "{}", None)
    store.write(now - 3_600_000, 500, 0, 10, "{}", "{}", None)  # exactly at the window edge: inside
    stats = store.stats(now, 3_600_000)
    assert stats == {
        "total": 5,
        "success": 3,
        "failed": 2,
        "avgPromptDuration": 20,  # (10 + 20 + 31) / 3 = 20.33, successes only
        "avgQueueDuration": 3,  # (1 + 1 + 1 + 2 + 10) / 5 = 3
        "p95PromptDuration": 31,
        "p95QueueDuration": 10,
    }
    assert store.stats(now, 10_800_000)["total"] == 6


def test_stats_average_rounds_half_up(db: Database) -> None:
    store = ChatLogStore(db)
    store.write(1, 200, 1, 0, "{}", "{}", None)
    store.write(1, 200, 2, 1, "{}", "{}", None)
    stats = store.stats(10, 100)
    assert stats["avgPromptDuration"] == 2  # 1.5 -> 2 like Math.round
    assert stats["avgQueueDuration"] == 1  # 0.5 -> 1
