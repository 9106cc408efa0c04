"""`scheduling.ComputeTurns`: models take turns computing on shared CPU cores (issue 21)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mentator.scheduling import ComputeTurns, QueueTimeout


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_of_the_model_with_the_turn_compute_together() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        for _ in range(3):
            await turns.enter("a", 1)
        assert turns.active() == {"a": 3}

    run(scenario())


def test_another_model_waits_until_the_last_request_of_the_model_with_the_turn_left() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        await turns.enter("a", 1)
        b = asyncio.create_task(turns.enter("b", 1))
        await settle()
        assert not b.done()
        turns.leave("a")
        await settle()
        assert not b.done()
        turns.leave("a")
        await settle()
        assert b.done() and turns.active() == {"b": 1}

    run(scenario())


def test_a_waiting_model_is_not_overtaken_by_new_requests_for_the_model_with_the_turn() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        b = asyncio.create_task(turns.enter("b", 1))
        await settle()
        late_a = asyncio.create_task(turns.enter("a", 1))
        await settle()
        assert not late_a.done()  # lines up behind b: a cannot keep the turn forever
        turns.leave("a")
        await settle()
        assert b.done() and not late_a.done()
        turns.leave("b")
        await settle()
        assert late_a.done() and turns.active() == {"a": 1}

    run(scenario())


def test_a_models_waiters_get_the_turn_together() -> None:
    order: list[str] = []

    async def request(turns: ComputeTurns, model: str) -> None:
        await turns.enter(model, 1)
        order.append(model)

    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        tasks = []
        for model in ("b", "c", "b", "c"):
            tasks.append(asyncio.create_task(request(turns, model)))
            await settle()
        turns.leave("a")
        await settle()
        assert order == ["b", "b"] and turns.active() == {"b": 2}
        turns.leave("b")
        turns.leave("b")
        await asyncio.gather(*tasks)
        assert order == ["b", "b", "c", "c"]

    run(scenario())


def test_the_limit_lets_that_many_models_compute_at_once_and_none_means_no_turns() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 2)
        await turns.enter("b", 2)
        c = asyncio.create_task(turns.enter("c", 2))
        await settle()
        assert not c.done()
        turns.leave("b")
        await settle()
        assert c.done() and turns.active() == {"a": 1, "c": 1}
        free = ComputeTurns()
        for model in ("a", "b", "c", "d"):
            await free.enter(model, None)
        assert len(free.active()) == 4

    run(scenario())


def test_the_deadline_bounds_the_wait_and_the_line_moves_on() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        started = time.monotonic()
        with pytest.raises(QueueTimeout):
            await turns.enter("b", 1, time.monotonic() + 0.1)
        assert 0.08 <= time.monotonic() - started < 2
        with pytest.raises(QueueTimeout):
            await turns.enter("b", 1, time.monotonic() - 1)
        turns.leave("a")
        await turns.enter("c", 1)  # the timed-out waiter left no trace in the line
        assert turns.active() == {"c": 1}

    run(scenario())


def test_a_cancelled_waiter_at_the_head_lets_the_next_one_in() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        b = asyncio.create_task(turns.enter("b", 1))
        await settle()
        late_a = asyncio.create_task(turns.enter("a", 1))
        await settle()
        assert not late_a.done()
        b.cancel()  # b's caller left: a may go on computing
        await settle()
        assert late_a.done() and turns.active() == {"a": 2}

    run(scenario())


def test_a_turn_granted_at_the_moment_of_cancellation_is_given_back() -> None:
    async def scenario() -> None:
        turns = ComputeTurns()
        await turns.enter("a", 1)
        b = asyncio.create_task(turns.enter("b", 1))
        c = asyncio.create_task(turns.enter("c", 1))
        await settle()
        turns.leave("a")  # grants b's turn...
        b.cancel()  # ...in the same step as b's caller leaves
        await settle()
        assert b.cancelled()
        assert c.done() and turns.active() == {"c": 1}

    run(scenario())
