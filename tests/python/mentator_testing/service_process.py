"""Start the real service as a child process (`python -m mentator --conf-use FILE`) for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    model_dir: Path
    db_file: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def engine_children(self) -> list[int]:
        """PIDs of the llama-server processes this service started."""
        return engine_children_of(self.process.pid)


def _stat(pid: int | str) -> tuple[str, str, int] | None:
    """(command name, state letter, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        comm = text.split("(", 1)[1].rsplit(")", 1)[0]
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        return comm, state, int(ppid)
    except (IndexError, ValueError):
        return None


def engine_children_of(pid: int) -> list[int]:
    """PIDs of the llama-server processes whose parent is ``pid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        info = _stat(stat.parent.name)
        if info is not None and info[2] == pid and info[0].startswith("llama-server"):
            pids.append(int(stat.parent.name))
    return pids


def still_running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are alive (a zombie has exited and counts as gone)."""
    alive = []
    for pid in pids:
        info = _stat(pid)
        if info is not None and info[1] != "Z":
            alive.append(pid)
    return alive


def stop_service(process: subprocess.Popen[bytes], log_text: str = "") -> None:
    """SIGTERM the service; it must exit 0 within 20 s, and every llama-server it had running
    must be gone by then. (The children are listed BEFORE the stop: afterwards an orphan is
    re-parented and could no longer be told apart.)"""
    engines = engine_children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the service ignored SIGTERM for 20 s\n{log_text}") from None
    assert code == 0, f"the service exited with {code} after SIGTERM\n{log_text}"
    deadline = time.monotonic() + 5
    while still_running(engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = still_running(engines)
    assert not leftovers, f"llama-server children left behind: {leftovers}\n{log_text}"


def write_config(
    tmp: Path,
    *,
    engine_dir: Path,
    model: Path,
    port: int,
    parallel: int = 4,
    extra: dict[str, object] | None = None,
    aliases: Sequence[str] = (),
) -> tuple[Path, Path, Path]:
    model_dir = tmp / "models"
    model_dir.mkdir()
    # A symlink, as users keep models elsewhere: the port follows links (the original did not).
    (model_dir / model.name).symlink_to(model)
    for alias in aliases:  # the same file under another name: another model to the service
        (model_dir / alias).symlink_to(model)
    db_file = tmp / "db" / "mentator.db"
    config = {
        "port": port,
        "host": "127.0.0.1",
        "modelDir": str(model_dir),
        "dbFile": str(db_file),
        "engineDir": str(engine_dir),
        "parallel": parallel,
        "queueLimit": 16,
        "defaultOptions": {"maxTokens": 256},
        "log": {"level": "debug", "liveDay": 30, "savePrompt": True},
        **(extra or {}),
    }
    path = tmp / "mentator.conf.jsonc"
    path.write_text("// integration test config\n" + json.dumps(config, indent=4))
    return path, model_dir, db_file


@contextmanager
def running_service(
    tmp: Path,
    *,
    engine_dir: Path,
    model: Path,
    parallel: int = 4,
    extra: dict[str, object] | None = None,
    aliases: Sequence[str] = (),
) -> Iterator[RunningService]:
    port = free_port()
    config, model_dir, db_file = write_config(
        tmp,
        engine_dir=engine_dir,
        model=model,
        port=port,
        parallel=parallel,
        extra=extra,
        aliases=aliases,
    )
    log_path = tmp / "service.log"
    # Absolute: under Pants sys.path holds sandbox-relative entries and the child runs elsewhere.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(str(Path(p).resolve()) for p in sys.path if p)
    )
    env.pop("MENTATOR_ENGINE_DIR", None)  # the config names it
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mentator", "--conf-use", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
    service = RunningService(f"http://127.0.0.1:{port}", process, log_path, model_dir, db_file)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"service exited with {process.returncode}:\n{service.log_text()}"
                )
            try:
                if httpx.get(f"{service.base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"service not ready in 60 s:\n{service.log_text()}")
            time.sleep(0.2)
        yield service
    finally:
        # No llama-server may outlive the service, and SIGTERM is a clean exit.
        stop_service(process, service.log_text())
