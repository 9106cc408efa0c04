"""The service harness's stop check catches a leaked engine and an unclean exit (shown with a fake
service: a process that starts a child named llama-server, as the real one does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mentator_testing.service_process import engine_children_of, still_running, stop_service

FAKE_SERVICE = """
import os, signal, subprocess, sys, time
engine = os.path.join(sys.argv[1], "llama-server")
child = subprocess.Popen([engine, "300"], start_new_session=sys.argv[2] == "leak")
def stop(*_):
    if sys.argv[2] != "leak":
        child.terminate()
        child.wait()
    sys.exit(int(sys.argv[3]))
signal.signal(signal.SIGTERM, stop)
time.sleep(300)
"""


def start_fake(tmp_path: Path, mode: str, exit_code: int = 0) -> subprocess.Popen[bytes]:
    (tmp_path / "llama-server").symlink_to("/bin/sleep")  # a process named llama-server
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE, encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), mode, str(exit_code)])
    deadline = time.monotonic() + 10
    while not engine_children_of(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_children_of(process.pid), "the fake service did not start its engine"
    return process


def test_a_clean_stop_passes(tmp_path: Path) -> None:
    stop_service(start_fake(tmp_path, "clean"))


def test_an_engine_left_running_is_reported(tmp_path: Path) -> None:
    process = start_fake(tmp_path, "leak")
    engines = engine_children_of(process.pid)
    try:
        with pytest.raises(AssertionError, match="llama-server children left behind"):
            stop_service(process)
    finally:
        for pid in still_running(engines):
            os.kill(pid, signal.SIGKILL)


def test_a_non_zero_exit_after_sigterm_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited with 3 after SIGTERM"):
        stop_service(start_fake(tmp_path, "clean", exit_code=3))
