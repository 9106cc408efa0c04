"""One test process at a time computes with a real engine on this machine.

Pants runs test files in parallel (one process per file, as many as there are cores). Two
llama-servers computing at once with a thread per core stall each other at ggml's thread
barriers (the finding behind `scheduling.ComputeTurns`): on this 2-core machine a 96-token
generation under a grammar then took over 120 s and a canary speed request over 60 s, so tests
failed on timeouts that measured nothing but the overlap. Every fixture that starts an engine
(the host's `llama-server`, or a container that runs one) holds this lock for its test process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

# A fixed path, not the temporary folder: every test process must see the same file.
LOCK_FILE = "/tmp/mentator-engine-tests.lock"


_held: list[int] = []  # this process's descriptor while it holds the lock (re-entrant)


@contextmanager
def engine_lock(path: str = LOCK_FILE) -> Iterator[None]:
    """Hold the machine-wide engine lock (waits for the process holding it; released on exit,
    also when the process dies). Re-entrant within a process: a second `flock` on another
    descriptor of the same file would wait for this process itself."""
    if _held:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.append(fd)
        yield
    finally:
        if _held:
            _held.pop()
        os.close(fd)  # closing the descriptor releases the lock
