"""Running one tool call in its own process (PY tools: the service's Python, `tools/runner.py`).

The child gets: the arguments and only the env values the code names (``{{name}}``), on stdin
(never in its environment or command line, so no `ps` shows them); an environment of ``PATH``,
``LANG`` and ``HOME`` (an empty temporary folder, also its working directory) and nothing of
the service's; resource limits (CPU seconds, address space, file size, open files) set by
`prlimit` (or between fork and exec); a wall-clock timeout after which its whole process group
is killed; a cap on what it may write to stdout and stderr. It runs as the service's own
(unprivileged) user.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mentator.tools import runner, runner_js
from mentator.tools.files import PLACEHOLDER, ToolFile

# The child runs the runner's source with `-c`: it never imports the service's package (and
# this works from any packaging of the service, files or zip).
RUNNER_SOURCE = inspect.getsource(runner)
JS_SOURCE = runner_js.SOURCE
MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
FILE_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
OPEN_FILES_LIMIT = 256


class ToolRunError(Exception):
    """A call that produced no result; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    output_bytes: int = 1024 * 1024


def python_source(tool: ToolFile) -> str:
    """The code with every ``{{name}}`` replaced by an access to the env entry (reference §5.3:
    textual, anywhere, string literals included); the same text in PY and JS."""
    return PLACEHOLDER.sub(lambda match: f"ENV[{json.dumps(match.group(1).strip())}]", tool.code)


def _limits(timeout_s: float, address_space: bool) -> list[tuple[int, int]]:
    cpu = max(1, int(timeout_s) + 1)
    limits = [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_BYTES),
        (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT),
    ]
    if address_space:
        limits.append((resource.RLIMIT_AS, MEMORY_LIMIT_BYTES))
    return limits


_PRLIMIT_OPTIONS = {
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NOFILE: "--nofile",
    resource.RLIMIT_AS: "--as",
}


def _limited(
    command: list[str], limits: list[tuple[int, int]]
) -> tuple[list[str], Callable[[], None] | None]:
    """The command under its limits: through util-linux ``prlimit`` when present (no Python
    code between fork and exec, which CPython calls unsafe in a threaded process), else a
    ``preexec_fn`` that only calls ``setrlimit``."""
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        options = [f"{_PRLIMIT_OPTIONS[kind]}={value}" for kind, value in limits]
        return [prlimit, *options, "--", *command], None

    def apply() -> None:
        for kind, value in limits:
            resource.setrlimit(kind, (value, value))

    return command, apply


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes; True when the stream had more (it is then drained no further)."""
    data = bytearray()
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(data), False
        data.extend(chunk)
        if len(data) > cap:
            return bytes(data[:cap]), True


def _command(tool: ToolFile) -> list[str]:
    if tool.lang == "JS":
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise ToolRunError(
                "Node.js (node) is not installed here, and JS tools need it; "
                "install it or write the tool in PY ($$code=PY)"
            )
        # V8 reserves far more address space than it uses, so its heap is capped instead.
        return [node, f"--max-old-space-size={MEMORY_LIMIT_BYTES // 2**20 // 2}", "-e", JS_SOURCE]
    # isolated: no PYTHON* variables, no user site, no script folder on sys.path
    return [sys.executable, "-I", "-c", RUNNER_SOURCE]


async def run_tool(tool: ToolFile, args: Any, env: dict[str, Any], limits: Limits) -> Any:
    """The tool's return value; `ToolRunError` on timeout, exception, crash or too much output."""
    command, preexec = _limited(_command(tool), _limits(limits.timeout_s, tool.lang != "JS"))
    payload = json.dumps(
        {"code": python_source(tool), "args": args, "env": env, "cap": limits.output_bytes}
    ).encode()
    with tempfile.TemporaryDirectory(prefix="mentator-tool-") as home:
        child_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home}
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=child_env,
            start_new_session=True,
            preexec_fn=preexec,  # None when prlimit sets the limits
        )
        try:
            return await asyncio.wait_for(_talk(process, payload, limits), limits.timeout_s)
        except TimeoutError as error:
            raise ToolRunError(
                f"timed out after {limits.timeout_s * 1000:.0f} ms (toolTimeoutMsec)"
            ) from error
        finally:
            await _finish(process)


async def _finish(process: asyncio.subprocess.Process) -> None:
    """Kill the child's process group and reap it. Its pipes are drained first: asyncio's
    ``wait()`` also waits for them to close, and a pipe left full (output over the cap) would
    never reach its end."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    streams = [stream for stream in (process.stdout, process.stderr) if stream is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(stream.read() for stream in streams)), 5)
    await process.wait()


async def _talk(process: asyncio.subprocess.Process, payload: bytes, limits: Limits) -> Any:
    assert process.stdin and process.stdout and process.stderr
    process.stdin.write(payload)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await process.stdin.drain()
    process.stdin.close()
    readers = [
        asyncio.ensure_future(_read_capped(stream, limits.output_bytes))
        for stream in (process.stdout, process.stderr)
    ]
    try:
        # Stop at the first stream over the cap: the child then blocks on its full pipe, and
        # waiting for the other stream would only end at the timeout.
        for finished in asyncio.as_completed(readers):
            _data, over = await finished
            if over:
                raise ToolRunError(f"wrote more than {limits.output_bytes} bytes of output")
    finally:
        for reader in readers:
            reader.cancel()
    out, err = readers[0].result()[0], readers[1].result()[0]
    code = await process.wait()
    line = out.decode("utf-8", "replace").strip().splitlines()
    if not line:
        tail = err.decode("utf-8", "replace").strip()[-500:]
        why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise ToolRunError(f"the tool process {why} without an answer{': ' + tail if tail else ''}")
    answer = json.loads(line[-1])
    if not answer.get("ok"):
        raise ToolRunError(str(answer.get("error")))
    return answer.get("result")
