"""`scheduling.ComputeTurns`: models take turns computing on shared CPU cores (issue 21)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from mentator.scheduling import ComputeTurns, QueueTimeout


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def holding(*keys: str, limit: int | None = 1) -> ComputeTurns:
    """Turns with one request of each of ``keys`` computing."""
    turns = ComputeTurns()
    for key in keys:
        await turns.enter(key, limit)
    return turns


async def waiter(turns: ComputeTurns, key: str, limit: int | None = 1) -> asyncio.Task[None]:
    """A request for ``key`` that came now (its task: done once it has the turn)."""
    task = asyncio.create_task(turns.enter(key, limit))
    await settle()
    return task


async def leave(turns: ComputeTurns, *keys: str) -> None:
    for key in keys:
        turns.leave(key)
    await settle()


def test_requests_of_the_model_with_the_turn_compute_together() -> None:
    async def scenario() -> None:
        assert (await holding("a", "a", "a")).active() == {"a": 3}

    run(scenario)


def test_another_model_waits_until_the_last_request_of_the_model_with_the_turn_left() -> None:
    async def scenario() -> None:
        turns = await holding("a", "a")
        b = await waiter(turns, "b")
        assert not b.done()
        await leave(turns, "a")
        assert not b.done()
        await leave(turns, "a")
        assert b.done() and turns.active() == {"b": 1}

    run(scenario)


def test_a_waiting_model_is_not_overtaken_by_new_requests_for_the_model_with_the_turn() -> None:
    async def scenario() -> None:
        turns = await holding("a")
        b = await waiter(turns, "b")
        late_a = await waiter(turns, "a")
        assert not late_a.done()  # lines up behind b: a cannot keep the turn forever
        await leave(turns, "a")
        assert b.done() and not late_a.done()
        await leave(turns, "b")
        assert late_a.done() and turns.active() == {"a": 1}

    run(scenario)


def test_a_models_waiters_get_the_turn_together() -> None:
    async def scenario() -> None:
        turns = await holding("a")
        tasks = {f"{key}{n}": await waiter(turns, key) for n, key in enumerate("bcbc")}
        await leave(turns, "a")
        assert {name for name, task in tasks.items() if task.done()} == {"b0", "b2"}
        assert turns.active() == {"b": 2}
        await leave(turns, "b", "b")
        assert all(task.done() for task in tasks.values()) and turns.active() == {"c": 2}

    run(scenario)


def test_the_limit_lets_that_many_models_compute_at_once_and_none_means_no_turns() -> None:
    async def scenario() -> None:
        turns = await holding("a", "b", limit=2)
        c = await waiter(turns, "c", limit=2)
        assert not c.done()
        await leave(turns, "b")
        assert c.done() and turns.active() == {"a": 1, "c": 1}
        assert len((await holding("a", "b", "c", "d", limit=None)).active()) == 4

    run(scenario)


def test_the_deadline_bounds_the_wait_and_the_line_moves_on() -> None:
    async def scenario() -> None:
        turns = await holding("a")
        started = time.monotonic()
        with pytest.raises(QueueTimeout):
            await turns.enter("b", 1, time.monotonic() + 0.1)
        assert 0.08 <= time.monotonic() - started < 2
        with pytest.raises(QueueTimeout):
            await turns.enter("b", 1, time.monotonic() - 1)
        turns.leave("a")
        await turns.enter("c", 1)  # the timed-out waiter left no trace in the line
        assert turns.active() == {"c": 1}

    run(scenario)


def test_a_cancelled_waiter_at_the_head_lets_the_next_one_in() -> None:
    async def scenario() -> None:
        turns = await holding("a")
        b = await waiter(turns, "b")
        late_a = await waiter(turns, "a")
        assert not late_a.done()
        b.cancel()  # b's caller left: a may go on computing
        await settle()
        assert late_a.done() and turns.active() == {"a": 2}

    run(scenario)


def test_a_turn_granted_at_the_moment_of_cancellation_is_given_back() -> None:
    async def scenario() -> None:
        turns = await holding("a")
        b = await waiter(turns, "b")
        c = await waiter(turns, "c")
        turns.leave("a")  # grants b's turn...
        b.cancel()  # ...in the same step as b's caller leaves
        await settle()
        assert b.cancelled()
        assert c.done() and turns.active() == {"c": 1}

    run(scenario)
