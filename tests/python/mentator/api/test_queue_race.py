"""/state and /health read the queue from worker threads while the event loop moves requests
through it (issue 19: a read that iterated the waiting line while the loop changed it raised
"deque mutated during iteration", and the route answered 500).

Through HTTP the race is rare: before the fix this test failed in about 1 run of 4 (1 or 2 bad
reads in 10,000); `test_scheduling.py` shows it on the queue alone in every run (hundreds of bad
reads a second)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from mentator.context import ServiceContext
from mentator.server import serve
from mentator_testing.fake_engine import FakeEngine, ServicesFactory
from mentator_testing.service_process import free_port

READERS = 8
REQUESTERS = 32
READS = 10_000
PROMPT = json.dumps({"model": "alpha.gguf", "message": {"user": "hi"}, "durationMsec": 60_000})


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Threads take turns every microsecond instead of every 5 ms, so that a read in a worker
    thread is often interrupted by the event loop: a race shows in seconds instead of hours."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def running(make_services: ServicesFactory) -> Iterator[tuple[ServiceContext, int]]:
    """The real server (`serve`: uvicorn and the periodic jobs) over a slow fake engine, in a
    thread of its own, so that the clients below are plain threads (TestClient is 10 times
    slower: 10,000 reads would take minutes)."""
    engine = FakeEngine(delay_s=0.002)
    services = make_services(engine, parallel=2, queue_limit=REQUESTERS)
    services.settings = dataclasses.replace(services.settings, port=free_port())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(
            serve(services, initialize=lambda _context: None, stop=stop)
        )
    )
    thread.start()
    port = services.settings.port
    deadline = time.monotonic() + 10
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
    yield services, port
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)
    loop.close()


@pytest.mark.usefixtures("frequent_thread_switches")
def test_state_and_health_never_fail_while_requests_queue_and_finish(
    running: tuple[ServiceContext, int],
) -> None:
    services, port = running
    lock = threading.Lock()
    reads = Counter[str]()
    failures: list[str] = []
    answers = Counter[int]()
    enough = threading.Event()

    def read(path: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not enough.is_set():
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                with lock:
                    reads[path] += 1
                    if response.status != 200:
                        failures.append(f"{path}: {response.status} {body[:200]!r}")
                    if reads.total() >= READS:
                        enough.set()
        except Exception as error:  # a dropped connection is a failure too, not a lost thread
            with lock:
                failures.append(f"{path}: {error!r}")
        finally:
            connection.close()

    def request() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            # Each requester keeps one request in the line until the readers have read enough.
            while not enough.is_set():
                connection.request("POST", "/prompt", PROMPT, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                with lock:
                    answers[response.status] += 1
        except Exception as error:
            with lock:
                failures.append(f"/prompt: {error!r}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=read, args=("/state" if n % 2 else "/health",))
        for n in range(READERS)
    ]
    threads += [threading.Thread(target=request) for _ in range(REQUESTERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    print(f"{dict(reads)} reads, prompts {dict(answers)}, {elapsed:.1f} s")
    assert reads.total() >= READS
    assert answers[200] >= REQUESTERS and set(answers) == {200}
    assert failures == [], f"{len(failures)} of {reads.total()} reads failed: {failures[:3]}"
    assert services.queue.waiting() == 0 and services.queue.running() == 0
