"""One llama-server child process: its command line, environment, readiness wait and shutdown.

The child listens on a free loopback port. Its output goes to a ring buffer (the last lines are
what an error message quotes when the child dies) and, line by line, to a sink (the app logger at
trace level). `start()` returns once `/health` answers 200 — llama-server answers 503 while it
loads the model — and fails early, quoting the output, when the child exits during the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineFolderError, EngineLayout, child_environment
from mentator.engine.errors import EngineNotFoundError, EngineStartError

LineSink = Callable[[str], None]

DEFAULT_RING_LINES = 200
_BIND_FAILURE = "couldn't bind"
_PORT_ATTEMPTS = 3
_HEALTH_POLL_S = 0.1


@dataclass(frozen=True)
class LaunchSpec:
    """What one child serves. Equal specs mean "no reload needed"."""

    model_path: Path
    gpu_layers: float | None = None  # None: the engine decides ("auto", fit to free VRAM)
    context_size: int | None = None  # per request (per slot); None: the model's default
    parallel: int = 1  # slots = requests decoded together (continuous batching)
    threads: int | None = None  # None/0: llama-server's default (all physical cores)
    embeddings: bool = True  # serve /embedding next to completions (no reload to switch)
    # --pooling for the embeddings: None = the model's own; "last" for a model that declares
    # none (see `pooling_for`).
    pooling: str | None = None
    # Where the child may save and restore slots' KV cache (warm swaps, `engine.warm`).
    slot_save_path: Path | None = None
    # llama-server's log verbosity 4: the loader's lines (where each layer and buffer went), which
    # the default verbosity keeps to itself. The canary uses it to show the offload.
    verbose_load: bool = False


# llama.cpp's pooling types that produce one vector per text (mean, cls, last, rank).
_DECLARED_POOLING = frozenset({1, 2, 3, 4})


def pooling_for(pooling_type: int | None) -> str | None:
    """``--pooling`` for a model: its own when it declares one, else ``last``.

    ``last`` is what /embedding answers for such a model anyway (the last token's vector,
    reference §2.5). It also keeps Debian's llama-server 11669 alive on CPUs with AMX: with an
    embeddings context and no pooling, the AMX CPU variant crashes on the first completion
    (SIGSEGV in libggml-base; seen on Sapphire Rapids).
    """
    return None if pooling_type in _DECLARED_POOLING else "last"


def build_argv(
    binary: Path, spec: LaunchSpec, choice: BackendChoice, host: str, port: int
) -> list[str]:
    """llama-server's command line for `spec` on `choice`'s backend.

    `--ctx-size` is the TOTAL context, split evenly between the `--parallel` slots, so it is the
    per-request size times the slot count. Without a size, the model's default is used (and
    llama-server's `--fit` may shrink it to fit the device memory).
    """
    parallel = max(1, spec.parallel)
    argv = [
        str(binary),
        "--model",
        str(spec.model_path.absolute()),  # the child runs in the engine folder
        "--host",
        host,
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "--no-webui",
        "--metrics",
        "--jinja",
    ]
    if not choice.is_gpu:
        argv += ["--n-gpu-layers", "0"]
    elif spec.gpu_layers is not None:
        argv += ["--n-gpu-layers", str(max(0, math.floor(spec.gpu_layers)))]
    if spec.context_size is not None:
        argv += ["--ctx-size", str(spec.context_size * parallel)]
    if spec.threads:
        argv += ["--threads", str(spec.threads)]
    if spec.slot_save_path is not None:
        argv += ["--slot-save-path", str(spec.slot_save_path.absolute())]
    if spec.verbose_load:
        argv += ["--log-verbosity", "4"]
    if spec.embeddings:
        argv.append("--embeddings")
        if spec.pooling:
            argv += ["--pooling", spec.pooling]
    return argv


def free_port(host: str) -> int:
    """A port the OS considers free right now (the child binds it a moment later; a lost race
    is detected from the child's output and retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent: the forked child must only call it (loading a
    library after fork in a threaded process can deadlock)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Deliver SIGTERM to the child when the service dies, even by SIGKILL, so a model never
    stays loaded in an orphaned llama-server."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def exited_in_kernel(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie not yet reaped, or gone) per ``/proc``;
    False where ``/proc`` cannot tell. Asked before every request, so read with bare ``os``
    calls (2.7 µs against ``Path.read_text``'s 10.5 µs here)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except FileNotFoundError:
        # Gone — unless there is no /proc at all (not Linux): then it cannot tell.
        return Path("/proc/self/stat").exists()
    except OSError:
        return False
    try:
        text = os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)
    state = text.rsplit(b")", 1)[-1].split()[:1]
    return state in ([b"Z"], [b"X"])


class LlamaServerProcess:
    """A supervised llama-server. Not reusable: a new model or a restart is a new object."""

    def __init__(
        self,
        layout: EngineLayout,
        spec: LaunchSpec,
        choice: BackendChoice,
        *,
        line_sink: LineSink | None = None,
        host: str = "127.0.0.1",
        base_environ: Mapping[str, str] | None = None,
        ring_lines: int = DEFAULT_RING_LINES,
    ) -> None:
        self.layout = layout
        self.spec = spec
        self.choice = choice
        self.host = host
        self.port: int | None = None
        self._line_sink = line_sink
        self._environ = dict(os.environ if base_environ is None else base_environ)
        self._ring: deque[str] = deque(maxlen=ring_lines)
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._exited: asyncio.Task[int] | None = None

    # --- state --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("llama-server was not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def alive(self) -> bool:
        # The kernel knows of a death (a zombie, or gone) before the event loop has reaped the
        # child and set its returncode: asking it lets the next request restart the engine
        # instead of meeting a dead one.
        if self._proc is None or self._proc.returncode is not None:
            return False
        return not exited_in_kernel(self._proc.pid)

    def output_tail(self, lines: int = 20) -> str:
        """The last lines the child printed, for error messages."""
        kept = list(self._ring)[-lines:]
        return "\n".join(kept)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, timeout_s: float) -> None:
        """Spawn the child and wait until it serves; `EngineStartError` with its output if not."""
        try:
            binary = self.layout.require_server().absolute()
        except EngineFolderError as error:
            raise EngineNotFoundError(str(error)) from error
        deadline = time.monotonic() + timeout_s
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = free_port(self.host)
            await self._spawn(binary)
            try:
                await self._wait_ready(deadline)
                return
            except EngineStartError:
                lost_port_race = _BIND_FAILURE in self.output_tail(40)
                if lost_port_race and attempt < _PORT_ATTEMPTS and time.monotonic() < deadline:
                    await self.stop()
                    self._ring.clear()
                    continue
                await self.stop()
                raise
            except BaseException:  # cancelled while loading: never leave a child behind
                await self.stop()
                raise

    async def _spawn(self, binary: Path) -> None:
        assert self.port is not None
        argv = build_argv(binary, self.spec, self.choice, self.host, self.port)
        env = child_environment(self._environ, self.choice.env)
        self._emit(f"starting: {' '.join(argv)}")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # ggml also searches the working directory for backends: use the engine's own.
                cwd=str(binary.parent),
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise EngineStartError(f"cannot run {binary}: {error}") from error
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._proc.stdout)),
            asyncio.create_task(self._pump(self._proc.stderr)),
        ]
        self._exited = asyncio.create_task(self._proc.wait())

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: take what is there
                raw = await stream.read(64 * 1024)
            if not raw:
                return
            self._emit(raw.decode("utf-8", errors="replace").rstrip())

    def _emit(self, line: str) -> None:
        if not line:
            return
        self._ring.append(line)
        if self._line_sink is not None:
            with contextlib.suppress(Exception):  # a logging failure must not kill the pump
                self._line_sink(line)

    async def _wait_ready(self, deadline: float) -> None:
        assert self._exited is not None
        url = f"{self.base_url}/health"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if self._exited.done():
                    await self._drain_readers()
                    raise EngineStartError(
                        f"llama-server exited while loading {self.spec.model_path.name} "
                        f"(code {self.returncode}): {self.output_tail() or 'no output'}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(url)
                    if response.status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise EngineStartError(
                        f"llama-server did not become ready within the start timeout while "
                        f"loading {self.spec.model_path.name}: {self.output_tail() or 'no output'}"
                    )
                await asyncio.wait({self._exited}, timeout=_HEALTH_POLL_S)

    async def wait_exit(self, timeout_s: float | None = None) -> int | None:
        """The exit code once the child has exited; None if it still runs after `timeout_s`."""
        if self._exited is None:
            return None
        done, _ = await asyncio.wait({self._exited}, timeout=timeout_s)
        if not done:
            return None
        await self._drain_readers()
        return self.returncode

    async def _drain_readers(self) -> None:
        """Let the pumps read the last output (the error message) after the exit."""
        if self._readers:
            await asyncio.wait(self._readers, timeout=1.0)

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; always reaps the child. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            if await self.wait_exit(grace_s) is None:
                self._emit(f"did not exit {grace_s:g} s after SIGTERM; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await self._reap()

    async def _reap(self) -> None:
        if self._exited is not None:
            await asyncio.wait({self._exited})
        await self._drain_readers()
        for reader in self._readers:
            reader.cancel()
        self._readers = []
