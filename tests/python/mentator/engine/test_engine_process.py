"""LlamaServerProcess against the fake llama-server: the real spawn/health/stop code runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.engine.errors import EngineNotFoundError, EngineStartError
from mentator.engine.process import (
    LaunchSpec,
    LlamaServerProcess,
    build_argv,
    exited_in_kernel,
    pooling_for,
)

CPU = BackendChoice(backend="cpu", reason="test")


def cuda_choice(engine: Path) -> BackendChoice:
    layout = EngineLayout(engine)
    return BackendChoice(backend="cuda", reason="test", env=layout.child_env("cuda", {}))


def test_argv_on_cpu_forces_no_offload_and_scales_the_context() -> None:
    spec = LaunchSpec(Path("/m/a.gguf"), gpu_layers=12, context_size=2048, parallel=4, threads=6)
    argv = build_argv(Path("/e/llama-server"), spec, CPU, "127.0.0.1", 5555)
    assert argv == [
        "/e/llama-server",
        "--model", "/m/a.gguf",
        "--host", "127.0.0.1",
        "--port", "5555",
        "--parallel", "4",
        "--no-webui",
        "--metrics",
        "--jinja",
        "--n-gpu-layers", "0",
        "--ctx-size", "8192",
        "--threads", "6",
        "--embeddings",
    ]  # fmt: skip


def test_embeddings_pool_the_last_token_unless_the_model_declares_a_pooling() -> None:
    assert pooling_for(None) == "last" and pooling_for(0) == "last"
    assert pooling_for(1) is None and pooling_for(2) is None
    spec = LaunchSpec(Path("/m/a.gguf"), pooling=pooling_for(None))
    argv = build_argv(Path("/e/llama-server"), spec, CPU, "h", 1)
    assert argv[-3:] == ["--embeddings", "--pooling", "last"]


def test_argv_on_gpu_passes_layers_or_lets_the_engine_decide() -> None:
    gpu = BackendChoice(backend="cuda", reason="test")
    with_layers = build_argv(Path("/e/s"), LaunchSpec(Path("/m"), gpu_layers=7.9), gpu, "h", 1)
    assert with_layers[with_layers.index("--n-gpu-layers") + 1] == "7"
    auto = build_argv(Path("/e/s"), LaunchSpec(Path("/m")), gpu, "h", 1)
    assert "--n-gpu-layers" not in auto and "--ctx-size" not in auto and "--threads" not in auto


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_start_waits_for_health_and_stop_terminates(
    fake_engine: Path, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    model = make_model("slow.gguf", load_s=0.6)
    lines: list[str] = []

    async def scenario() -> None:
        spec = LaunchSpec(model.path, context_size=1024, parallel=2)
        process = LlamaServerProcess(EngineLayout(fake_engine), spec, CPU, line_sink=lines.append)
        started = time.monotonic()
        await process.start(timeout_s=20)
        assert time.monotonic() - started >= 0.5  # it waited through the 503s
        assert process.alive and process.returncode is None
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{process.base_url}/health")).status_code == 200
        await process.stop()
        assert not process.alive
        assert process.returncode == -signal.SIGTERM

    run(scenario())
    (launch,) = recorded_launches()
    assert launch["argv"][launch["argv"].index("--ctx-size") + 1] == "2048"
    assert launch["GGML_BACKEND_PATH"] is None
    assert launch["cwd"] == str(fake_engine)
    assert any("loaded CPU backend" in line for line in lines)
    assert lines[0].startswith("starting: ")


def test_gpu_child_gets_the_backend_environment(
    fake_engine: Path, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    model = make_model("a.gguf")

    async def scenario() -> None:
        process = LlamaServerProcess(
            EngineLayout(fake_engine), LaunchSpec(model.path), cuda_choice(fake_engine)
        )
        await process.start(timeout_s=20)
        await process.stop()

    run(scenario())
    (launch,) = recorded_launches()
    assert launch["GGML_BACKEND_PATH"] == str(fake_engine / "cuda" / "libggml-cuda.so")
    assert launch["LD_LIBRARY_PATH"].startswith(f"{fake_engine / 'cuda'}:{fake_engine}")


def test_exit_during_load_fails_early_with_the_output(
    fake_engine: Path, make_model: Callable[..., Any]
) -> None:
    model = make_model(
        "bad.gguf", fail_load="llama_model_load: error loading model: bad magic", code=3
    )

    async def scenario() -> LlamaServerProcess:
        process = LlamaServerProcess(EngineLayout(fake_engine), LaunchSpec(model.path), CPU)
        started = time.monotonic()
        with pytest.raises(EngineStartError) as caught:
            await process.start(timeout_s=30)
        assert time.monotonic() - started < 10  # did not wait for the timeout
        assert "exited while loading bad.gguf (code 3)" in str(caught.value)
        assert "bad magic" in str(caught.value)
        return process

    process = run(scenario())
    assert not process.alive


def test_start_timeout_stops_the_child(fake_engine: Path, make_model: Callable[..., Any]) -> None:
    model = make_model("never.gguf", load_s=60)

    async def scenario() -> LlamaServerProcess:
        process = LlamaServerProcess(EngineLayout(fake_engine), LaunchSpec(model.path), CPU)
        with pytest.raises(EngineStartError, match="did not become ready"):
            await process.start(timeout_s=1.0)
        return process

    process = run(scenario())
    assert not process.alive and process.returncode is not None


def test_cancelled_start_leaves_no_child(fake_engine: Path, make_model: Callable[..., Any]) -> None:
    model = make_model("never.gguf", load_s=60)

    async def scenario() -> LlamaServerProcess:
        process = LlamaServerProcess(EngineLayout(fake_engine), LaunchSpec(model.path), CPU)
        task = asyncio.create_task(process.start(timeout_s=60))
        await asyncio.sleep(0.8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return process

    process = run(scenario())
    assert process.pid is not None and not process.alive


def test_stop_kills_a_child_that_ignores_sigterm(
    fake_engine: Path, make_model: Callable[..., Any]
) -> None:
    model = make_model("stubborn.gguf", ignore_sigterm=True)

    async def scenario() -> None:
        process = LlamaServerProcess(EngineLayout(fake_engine), LaunchSpec(model.path), CPU)
        await process.start(timeout_s=20)
        await process.stop(grace_s=0.5)
        assert process.returncode == -signal.SIGKILL
        assert "sending SIGKILL" in process.output_tail()

    run(scenario())


def test_a_killed_child_is_seen_dead(fake_engine: Path, make_model: Callable[..., Any]) -> None:
    model = make_model("a.gguf")

    async def scenario() -> None:
        process = LlamaServerProcess(EngineLayout(fake_engine), LaunchSpec(model.path), CPU)
        await process.start(timeout_s=20)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        assert await process.wait_exit(5) == -signal.SIGKILL
        assert not process.alive
        await process.stop()  # harmless on a dead child

    run(scenario())


def test_missing_server_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    process = LlamaServerProcess(EngineLayout(tmp_path), LaunchSpec(tmp_path / "m.gguf"), CPU)
    with pytest.raises(EngineNotFoundError) as caught:
        run(process.start(timeout_s=5))
    assert str(tmp_path) in str(caught.value)
    assert "engine-export.sh" in str(caught.value)


def _gone_or_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_child_dies_with_a_killed_service(
    fake_engine: Path, make_model: Callable[..., Any]
) -> None:
    model = make_model("a.gguf")
    service = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from mentator.backends.layout import EngineLayout
        from mentator.engine.process import LaunchSpec, LlamaServerProcess
        from mentator.backends.choice import BackendChoice

        async def main():
            process = LlamaServerProcess(
                EngineLayout(Path({str(fake_engine)!r})),
                LaunchSpec(Path({str(model.path)!r})),
                BackendChoice(backend="cpu", reason="test"),
            )
            await process.start(timeout_s=20)
            print(process.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", service],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    child_pid = 0
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert not _gone_or_zombie(child_pid)
        parent.kill()  # SIGKILL: the service gets no chance to stop its child
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not _gone_or_zombie(child_pid):
            assert time.monotonic() < deadline, "llama-server outlived the killed service"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
        if child_pid and not _gone_or_zombie(child_pid):
            os.kill(child_pid, signal.SIGKILL)  # never leave a fake server behind


def test_relative_engine_and_model_paths_work(
    fake_engine: Path,
    make_model: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    recorded_launches: Callable[[], Any],
) -> None:
    model = make_model("a.gguf")
    monkeypatch.chdir(fake_engine.parent)  # the child itself runs in the engine folder
    layout = EngineLayout(Path(fake_engine.name))
    spec = LaunchSpec(model.path.relative_to(fake_engine.parent))

    async def scenario() -> None:
        process = LlamaServerProcess(layout, spec, CPU)
        await process.start(timeout_s=20)
        await process.stop()

    run(scenario())
    (launch,) = recorded_launches()
    assert launch["argv"][launch["argv"].index("--model") + 1] == str(model.path)


def test_exited_in_kernel_sees_a_killed_child_before_it_is_reaped() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert not exited_in_kernel(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not exited_in_kernel(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exited_in_kernel(child.pid)  # a zombie: not reaped (no wait() yet)
    finally:
        child.kill()
        child.wait()
    assert exited_in_kernel(child.pid)  # reaped: gone
