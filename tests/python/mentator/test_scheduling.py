"""RequestQueue: FIFO order, bounded waiting, deadlines, cancellation safety."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mentator.scheduling import QueueFull, QueueTimeout, RequestQueue


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_free_slots_are_taken_at_once() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=2, limit=5)
        async with queue.slot() as waited_a, queue.slot() as waited_b:
            assert (waited_a, waited_b) == (0, 0)
            assert queue.running() == 2 and queue.waiting() == 0
        assert queue.running() == 0

    run(scenario())


def test_waiters_get_slots_in_arrival_order_and_report_their_wait() -> None:
    order: list[int] = []
    waits: dict[int, int] = {}

    async def job(queue: RequestQueue, number: int, hold_s: float) -> None:
        async with queue.slot() as waited:
            order.append(number)
            waits[number] = waited
            await asyncio.sleep(hold_s)

    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=10)
        tasks = []
        for number in range(5):
            tasks.append(asyncio.create_task(job(queue, number, 0.05)))
            await asyncio.sleep(0)  # arrival order = creation order
        await asyncio.sleep(0.01)
        assert queue.running() == 1 and queue.waiting() == 4
        await asyncio.gather(*tasks)
        assert queue.running() == 0 and queue.waiting() == 0

    run(scenario())
    assert order == [0, 1, 2, 3, 4]
    assert waits[0] == 0 and 150 <= waits[4] <= 1000


def test_queue_full_is_refused_immediately() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=1)
        release = asyncio.Event()

        async def holder() -> None:
            async with queue.slot():
                await release.wait()

        running = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(holder())
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(QueueFull, match="1 requests running and 1 waiting"):
            async with queue.slot():
                pass
        assert time.monotonic() - started < 0.1
        release.set()
        await asyncio.gather(running, waiting)

    run(scenario())


def test_limit_zero_means_no_waiting() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=0)
        async with queue.slot():
            with pytest.raises(QueueFull):
                async with queue.slot():
                    pass

    run(scenario())


def test_deadline_bounds_the_wait() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=5)
        async with queue.slot():
            started = time.monotonic()
            with pytest.raises(QueueTimeout, match="cancelled by timeout"):
                async with queue.slot(deadline=time.monotonic() + 0.2):
                    pass
            assert 0.15 <= time.monotonic() - started < 1.0
            assert queue.waiting() == 0
            with pytest.raises(QueueTimeout):  # already past: no wait at all
                async with queue.slot(deadline=time.monotonic() - 1):
                    pass
        assert queue.running() == 0
        async with queue.slot(deadline=time.monotonic() - 1) as waited:  # a free slot is fine
            assert waited == 0

    run(scenario())


def test_cancelled_waiter_leaves_without_leaking_a_slot() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=5)
        entered: list[str] = []

        async def job(name: str) -> None:
            async with queue.slot():
                entered.append(name)
                await asyncio.sleep(0.05)

        async with queue.slot():
            gone = asyncio.create_task(job("gone"))
            after = asyncio.create_task(job("after"))
            await asyncio.sleep(0.01)
            assert queue.waiting() == 2
            gone.cancel()
            await asyncio.sleep(0)
            assert queue.waiting() == 1
        await after
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert entered == ["after"]
        assert queue.running() == 0 and queue.waiting() == 0

    run(scenario())


def test_slot_handed_over_while_the_waiter_is_cancelled_is_passed_on() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=5)
        entered: list[str] = []

        async def job(name: str) -> None:
            async with queue.slot():
                entered.append(name)

        first = queue.slot()
        await first.__aenter__()
        unlucky = asyncio.create_task(job("unlucky"))
        next_one = asyncio.create_task(job("next"))
        await asyncio.sleep(0.01)
        # Release (hands the slot to "unlucky") and cancel "unlucky" before it runs again.
        await first.__aexit__(None, None, None)
        unlucky.cancel()
        # A leaked slot would leave "next" waiting forever: fail fast instead.
        await asyncio.wait_for(asyncio.gather(unlucky, next_one, return_exceptions=True), 5)
        assert entered == ["next"]
        assert queue.running() == 0 and queue.waiting() == 0

    run(scenario())


def test_exception_in_the_body_frees_the_slot() -> None:
    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=1)
        with pytest.raises(RuntimeError):
            async with queue.slot():
                raise RuntimeError("boom")
        assert queue.running() == 0

    run(scenario())


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="slots must be at least 1"):
        RequestQueue(slots=0, limit=1)
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        RequestQueue(slots=1, limit=-1)


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Threads take turns every 0.1 ms instead of every 5 ms: a read from a thread is then often
    interrupted by the event loop, and a race shows within a second."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_counts_can_be_read_from_threads_while_the_loop_moves_the_line() -> None:
    """/state, /health and the heartbeat read the counts from worker threads (issue 19: walking
    the waiting line from a thread raised "deque mutated during iteration")."""
    queue = RequestQueue(slots=1, limit=32)
    stop = threading.Event()
    lock = threading.Lock()
    reads: list[int] = []
    errors: list[str] = []
    out_of_range: list[int] = []

    def reader() -> None:
        count = 0
        while not stop.is_set():
            try:
                waiting = queue.waiting()
            except RuntimeError as error:
                with lock:
                    errors.append(str(error))
            else:
                if not 0 <= waiting <= queue.limit:
                    with lock:
                        out_of_range.append(waiting)
            count += 1
        with lock:
            reads.append(count)

    async def job() -> None:
        async with queue.slot():
            await asyncio.sleep(0)

    async def churn() -> int:
        rounds = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            await asyncio.gather(*(job() for _ in range(32)))  # 1 runs, 31 wait, all finish
            rounds += 1
        return rounds

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        rounds = run(churn())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert rounds >= 5 and sum(reads) >= 10_000
    assert errors == [], f"{len(errors)} of {sum(reads)} reads failed, e.g. {errors[0]}"
    assert out_of_range == []
    assert queue.waiting() == 0 and queue.running() == 0


def test_each_key_has_its_own_slots_and_waits_only_behind_its_own() -> None:
    """Residency: a model's busy slots (or its load) never hold up another model's request."""

    async def scenario() -> None:
        queue = RequestQueue(slots=1, limit=5)
        async with queue.slot(None, "a"):
            async with queue.slot(None, "b") as waited:  # a's slot is taken, b's is free
                assert waited == 0
                assert queue.running() == 2
            later_a = asyncio.create_task(_hold(queue, "a"))
            await asyncio.sleep(0.05)
            assert queue.waiting() == 1 and not later_a.done()
            async with queue.slot(None, "b") as waited:  # a waiter for a does not block b
                assert waited == 0
        await later_a
        assert queue.running() == 0 and queue.waiting() == 0

    run(scenario())


async def _hold(queue: RequestQueue, key: str) -> None:
    async with queue.slot(None, key):
        await asyncio.sleep(0.01)
