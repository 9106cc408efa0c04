"""The engine lock keeps a second process out while one holds it, and nests within a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mentator_testing.engine_lock import engine_lock

_TRY = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "try:\n"
    "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "except BlockingIOError:\n"
    "    sys.exit(3)\n"
)


def _other_process_gets_it(path: Path) -> bool:
    return subprocess.run([sys.executable, "-c", _TRY, str(path)], check=False).returncode == 0


def test_another_process_waits_while_it_is_held_and_gets_it_after(tmp_path: Path) -> None:
    lock = tmp_path / "engine.lock"
    with engine_lock(str(lock)):
        assert not _other_process_gets_it(lock)
        with engine_lock(str(lock)):  # nested: must not wait for itself
            assert not _other_process_gets_it(lock)
        assert not _other_process_gets_it(lock)  # still held by the outer one
    assert _other_process_gets_it(lock)
