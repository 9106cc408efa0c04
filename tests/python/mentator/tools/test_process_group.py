"""A tool's timeout ends its whole process group: the tool and whatever it started.

A tool that starts a grandchild and then hangs must fail at its timeout, not when the
grandchild happens to close the pipes it inherited, and no grandchild may outlive the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from mentator.tools.execution import Limits, ToolRunError, run_tool
from mentator.tools.files import ToolFile

TIMEOUT_S = 1.0
# Killing the group and reaping takes milliseconds; the slack is for a busy machine. Killing
# only the child leaves the grandchild holding the stdout pipe, and the call then ends only
# when the parent gives up draining it (5 s later).
BOUND_S = TIMEOUT_S + 2.5

# Two grandchildren: one keeps the tool's stdout and stderr (so the parent's read waits on it),
# one has let go of them (so only a liveness check notices it). Their pids go to a file the
# test reads, since a hanging tool returns nothing.
PY_CODE = """
import subprocess, time
kept = subprocess.Popen(["sleep", "30"])
let_go = subprocess.Popen(
    ["sleep", "30"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
with open(args["pidFile"], "w") as pid_file:
    pid_file.write(f"{kept.pid} {let_go.pid}")
time.sleep(30)
"""

JS_CODE = """
const cp = require('child_process');
const kept = cp.spawn('sleep', ['30'], { stdio: 'inherit' });
const letGo = cp.spawn('sleep', ['30'], { stdio: 'ignore' });
LIB.fs.writeFileSync(args.pidFile, `${kept.pid} ${letGo.pid}`);
await new Promise((r) => setTimeout(r, 30000));
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` is a running ``sleep`` (a zombie waiting for its reaper, or a pid
    reused by another program, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and command.startswith(b"sleep")


def _wait_gone(pids: list[int], within_s: float) -> list[int]:
    """The pids still alive after ``within_s`` (the kill is asynchronous to the caller)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@pytest.mark.parametrize(
    ("lang", "code"), [("PY", PY_CODE), pytest.param("JS", JS_CODE, marks=needs_node)]
)
def test_timeout_kills_the_grandchildren_too(tmp_path: Path, lang: str, code: str) -> None:
    pid_file = tmp_path / "pids"
    tool = ToolFile("t.tool.txt", "t.tool.txt", Path("t.tool.txt"), {"type": "object"}, lang, code)
    started = time.monotonic()
    try:
        with pytest.raises(ToolRunError, match=r"timed out after 1000 ms \(toolTimeoutMsec\)"):
            asyncio.run(run_tool(tool, {"pidFile": str(pid_file)}, {}, Limits(TIMEOUT_S)))
        elapsed = time.monotonic() - started
        pids = [int(pid) for pid in pid_file.read_text().split()]
        assert len(pids) == 2, "the tool did not start its grandchildren before its timeout"
        problems = []
        if elapsed >= BOUND_S:
            problems.append(f"the timed-out call took {elapsed:.1f} s, not about {TIMEOUT_S} s")
        if alive := _wait_gone(pids, 2.0):
            problems.append(f"grandchildren {alive} outlived the timed-out tool")
        assert not problems, "; ".join(problems)
    finally:
        # Never leave a sleeper behind, even when the test fails.
        for pid in [int(pid) for pid in pid_file.read_text().split()] if pid_file.exists() else []:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
