"""EngineManager residency rules, crash restart and GPU→CPU fallback, on the fake llama-server."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.engine import manager as manager_module
from mentator.engine import residency
from mentator.engine.errors import EngineError, EngineExitedError, EngineStartError
from mentator.engine.manager import EngineManager
from mentator.engine.ports import CompletionRequest

CPU = BackendChoice(backend="cpu", reason="test")


def manager_for(settings: Any, logger: Any, backend: BackendChoice = CPU) -> EngineManager:
    return EngineManager(
        settings, backend, logger, start_timeout_s=20, clock_ms=lambda: 1_700_000_000_000
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_same_settings_reuse_the_child_and_changes_reload(
    settings: Any, logger: Any, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    a = make_model("a.gguf", size_kb=5000)
    b = make_model("b.gguf")

    async def scenario() -> list[str]:
        manager = manager_for(settings, logger)
        statuses: list[str] = []
        for model, gpulayer, context in [
            (a, None, None),
            (a, None, None),  # exists
            (a, None, 1024),  # contextSize changed
            (a, 3, 1024),  # gpulayer changed
            (a, 3, 1024),  # exists
            (b, 3, 1024),  # another model
        ]:
            async with manager.use(model, gpulayer, context) as (handle, status):
                statuses.append(status)
                result = await handle.complete(
                    CompletionRequest([{"role": "user", "content": "hi"}])
                )
                assert result.text == "echo: hi"
        current = manager.current()
        assert current is not None
        assert current.to_json() == {
            "name": "b.gguf",
            "sizeMb": 2,
            "loadTimestamp": 1_700_000_000_000,
            "gpulayer": 3,
            "contextSize": 1024,
        }
        await manager.shutdown()
        assert manager.current() is None
        return statuses

    assert run(scenario()) == ["load", "exists", "load", "load", "exists", "load"]
    assert len(recorded_launches()) == 4
    change = " - config change only"
    assert logger.messages("debug") == [
        'load model to memory "a.gguf" (size 5 mb, gpulayer auto, contextSize default)',
        f'load model to memory "a.gguf" (size 5 mb, gpulayer auto, contextSize 1024){change}',
        f'load model to memory "a.gguf" (size 5 mb, gpulayer 3, contextSize 1024){change}',
        # maxLoadedModels 1 (the stub's): the other model takes a.gguf's place
        'unload model "a.gguf" to make room for "b.gguf" (capacity)',
        'load model to memory "b.gguf" (size 2 mb, gpulayer 3, contextSize 1024)',
    ]


def test_embedding_reuses_the_completion_child(
    settings: Any, logger: Any, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    model = make_model("a.gguf")

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        async with manager.use(model, None, None) as (handle, status):
            assert status == "load"
            await handle.complete(CompletionRequest([{"role": "user", "content": "x"}]))
        async with manager.use(model, None, None) as (handle, status):
            assert status == "exists"
            assert await handle.embed("hello") == [1.0, -2.0]
        await manager.shutdown()

    run(scenario())
    (launch,) = recorded_launches()
    assert "--embeddings" in launch["argv"]


def test_failed_load_leaves_nothing_loaded_and_the_next_load_works(
    settings: Any, logger: Any, make_model: Callable[..., Any]
) -> None:
    good = make_model("good.gguf")
    bad = make_model("bad.gguf", fail_load="error loading model: unknown architecture", code=1)

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        async with manager.use(good, None, None):
            pass
        with pytest.raises(EngineStartError, match="unknown architecture"):
            await manager.acquire(bad, None, None)
        assert manager.current() is None  # the fix: no stale currentModel
        assert manager.in_use() == 0
        async with manager.use(good, None, None) as (_, status):
            assert status == "load"
        await manager.shutdown()

    run(scenario())


def test_crash_mid_request_is_reported_and_the_next_acquire_restarts(
    settings: Any, logger: Any, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    model = make_model("slow.gguf", generate_s=10)

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        handle, status = await manager.acquire(model, None, None)
        request = asyncio.create_task(
            handle.complete(CompletionRequest([{"role": "user", "content": "x"}]))
        )
        await asyncio.sleep(0.5)
        (launch,) = recorded_launches()
        os.kill(int(launch["pid"]), signal.SIGKILL)
        with pytest.raises(EngineExitedError) as caught:
            await request
        handle.release()
        assert str(caught.value).startswith("engine process exited unexpectedly (code -9): ")
        assert manager.engine_alive() is False
        assert manager.current() is not None
        assert manager.restarts() == {}
        again, status = await manager.acquire(model, None, None)
        assert status == "load"
        assert manager.restarts() == {"slow.gguf": 1}
        assert await again.embed("x") == [1.0, -2.0]
        again.release()
        await manager.shutdown()

    run(scenario())
    assert len(recorded_launches()) == 2
    assert any("exited unexpectedly (code -9); restarting" in m for m in logger.messages("error"))


@pytest.fixture
def short_grouping_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """swapGrouping lets a busy model serve up to GROUPING_BOUND_S before a swap takes it; the
    FIFO behind a swap (what these tests check) holds after that bound, shortened here."""
    monkeypatch.setattr(residency, "GROUPING_BOUND_S", 0.2)
    monkeypatch.setattr(manager_module, "GROUPING_BOUND_S", 0.2)


@pytest.mark.usefixtures("short_grouping_bound")
def test_reload_waits_for_running_requests(
    settings: Any, logger: Any, make_model: Callable[..., Any]
) -> None:
    a = make_model("a.gguf")
    b = make_model("b.gguf")

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        first, _ = await manager.acquire(a, None, None)
        switching = asyncio.create_task(manager.acquire(b, None, None))
        await asyncio.sleep(0.5)
        assert not switching.done()  # the request on a.gguf still runs
        # A later request for a.gguf waits behind the switch (FIFO), it does not jump ahead.
        late = asyncio.create_task(manager.acquire(a, None, None))
        await asyncio.sleep(0.2)
        assert not late.done()
        assert (
            await first.complete(CompletionRequest([{"role": "user", "content": "still here"}]))
        ).text == "echo: still here"
        first.release()
        second, status = await asyncio.wait_for(switching, 20)
        assert status == "load" and second.model_name == "b.gguf"
        await asyncio.sleep(0.2)
        assert not late.done()  # now waits for b.gguf's request
        second.release()
        third, status = await asyncio.wait_for(late, 20)
        assert status == "load" and third.model_name == "a.gguf"
        third.release()
        await manager.shutdown()

    run(scenario())


def test_gpu_start_failure_falls_back_to_cpu_once(
    fake_engine: Any,
    settings: Any,
    logger: Any,
    make_model: Callable[..., Any],
    recorded_launches: Callable[[], Any],
) -> None:
    model = make_model(
        "a.gguf", fail_on_gpu="ggml_cuda_init: failed to initialize CUDA: unknown error"
    )
    cuda = BackendChoice(
        backend="cuda",
        reason="NVIDIA GPU",
        skipped={},
        env=EngineLayout(fake_engine).child_env("cuda", {}),
    )

    async def scenario() -> None:
        manager = manager_for(settings, logger, cuda)
        async with manager.use(model, None, None) as (handle, status):
            assert status == "load"
            assert (
                await handle.complete(CompletionRequest([{"role": "user", "content": "x"}]))
            ).text == "echo: x"
        assert manager.backend.backend == "cpu"
        assert "failed to initialize CUDA" in manager.backend.skipped["cuda"]
        assert manager.backend.reason.startswith("fell back to CPU: cuda engine failed to start")
        async with manager.use(model, None, 512) as (_, status):  # later loads go to the CPU
            assert status == "load"
        await manager.shutdown()

    run(scenario())
    launches = recorded_launches()
    assert [bool(launch["GGML_BACKEND_PATH"]) for launch in launches] == [True, False, False]


def test_a_failed_gpu_start_tries_the_next_usable_tier_before_the_cpu(
    fake_engine: Any,
    settings: Any,
    logger: Any,
    make_model: Callable[..., Any],
    recorded_launches: Callable[[], Any],
) -> None:
    model = make_model("a.gguf", fail_on_gpu="cudaMalloc failed: out of memory", only="/cuda/")
    layout = EngineLayout(fake_engine)
    vulkan = BackendChoice(
        backend="vulkan", reason="Vulkan device (GPU)", env=layout.child_env("vulkan", {})
    )
    cuda = BackendChoice(
        backend="cuda",
        reason="NVIDIA GPU",
        env=layout.child_env("cuda", {}),
        fallbacks=[vulkan],
    )

    async def scenario() -> None:
        manager = manager_for(settings, logger, cuda)
        async with manager.use(model, None, None) as (_, status):
            assert status == "load"
        assert manager.backend.backend == "vulkan"
        assert "out of memory" in manager.backend.skipped["cuda"]
        assert manager.backend.reason.startswith("fell back to vulkan: cuda engine failed")
        await manager.shutdown()

    run(scenario())
    paths = [launch["GGML_BACKEND_PATH"] for launch in recorded_launches()]
    assert [Path(p).parent.name for p in paths] == ["cuda", "vulkan"]


def test_when_cpu_fails_too_the_gpu_backend_stays(
    fake_engine: Any, settings: Any, logger: Any, make_model: Callable[..., Any]
) -> None:
    model = make_model("broken.gguf", fail_load="error loading model: bad magic")
    cuda = BackendChoice(
        backend="cuda", reason="NVIDIA GPU", env=EngineLayout(fake_engine).child_env("cuda", {})
    )

    async def scenario() -> EngineManager:
        manager = manager_for(settings, logger, cuda)
        with pytest.raises(EngineStartError, match="the CPU fallback failed too"):
            await manager.acquire(model, None, None)
        return manager

    assert run(scenario()).backend.backend == "cuda"


def test_cancelled_load_leaves_no_child_and_nothing_loaded(
    settings: Any, logger: Any, make_model: Callable[..., Any], recorded_launches: Callable[[], Any]
) -> None:
    model = make_model("slow.gguf", load_s=60)

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        task = asyncio.create_task(manager.acquire(model, None, None))
        await asyncio.sleep(0.8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert manager.current() is None and manager.in_use() == 0
        await manager.shutdown()

    run(scenario())
    (launch,) = recorded_launches()
    with pytest.raises(ProcessLookupError):
        os.kill(int(launch["pid"]), 0)


def test_acquire_after_shutdown_is_refused(
    settings: Any, logger: Any, make_model: Callable[..., Any]
) -> None:
    model = make_model("a.gguf")

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        await manager.shutdown()
        with pytest.raises(EngineError, match="shutting down"):
            await manager.acquire(model, None, None)

    run(scenario())


def test_a_resident_model_never_waits_behind_another_models_load(
    settings: Any, logger: Any, make_model: Callable[..., Any]
) -> None:
    a = make_model("a.gguf")
    slow = make_model("slow.gguf", load_s=3)
    settings = dataclasses.replace(settings, max_loaded_models=2)

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        handle, _ = await manager.acquire(a, None, None)
        handle.release()
        loading = asyncio.create_task(manager.acquire(slow, None, None))
        await asyncio.sleep(0.5)
        assert not loading.done()
        started = time.monotonic()
        handle, status = await manager.acquire(a, None, None)
        assert status == "exists" and time.monotonic() - started < 0.5
        result = await handle.complete(CompletionRequest([{"role": "user", "content": "hi"}]))
        assert result.text == "echo: hi" and not loading.done()
        handle.release()
        slow_handle, status = await asyncio.wait_for(loading, 20)
        assert status == "load"
        slow_handle.release()
        assert {entry.name for entry in manager.loaded_models()} == {"a.gguf", "slow.gguf"}
        await manager.shutdown()

    run(scenario())


@pytest.mark.usefixtures("short_grouping_bound")
@pytest.mark.parametrize("grouping", [False, True])
def test_a_busy_model_yields_to_a_waiting_load_then_comes_back(
    settings: Any, logger: Any, make_model: Callable[..., Any], grouping: bool
) -> None:
    """maxLoadedModels 1 and a model kept busy: the other model's load waits for it to become
    idle, and requests arriving meanwhile for the busy model wait behind that swap (the
    fairness bound: no one waits more than one swap beyond their turn). With grouping, once the
    grouping bound has passed."""
    settings = dataclasses.replace(settings, swap_grouping=grouping)
    a = make_model("a.gguf")
    b = make_model("b.gguf")

    async def scenario() -> list[str]:
        manager = manager_for(settings, logger)
        order: list[str] = []
        first, _ = await manager.acquire(a, None, None)
        switching = asyncio.create_task(manager.acquire(b, None, None))
        await asyncio.sleep(0.3)
        more_a = asyncio.create_task(manager.acquire(a, None, None))
        await asyncio.sleep(0.3)
        assert not more_a.done()  # does not keep a busy ahead of b's turn
        first.release()
        second, status = await asyncio.wait_for(switching, 20)
        order.append(f"b:{status}")
        second.release()
        third, status = await asyncio.wait_for(more_a, 20)
        order.append(f"a:{status}")
        third.release()
        await manager.shutdown()
        return order

    assert run(scenario()) == ["b:load", "a:load"]


@pytest.mark.parametrize(("grouping", "loads_of_a"), [(True, 1), (False, 2)])
def test_requests_waiting_for_a_model_use_it_before_a_later_swap(
    settings: Any, logger: Any, make_model: Callable[..., Any], grouping: bool, loads_of_a: int
) -> None:
    """swapGrouping: three requests arrive for a (not loaded), then one for b, with room for
    one model. Grouped, a's three requests are served by one load before b takes its place;
    in plain LRU order b may evict a between them, and a is loaded again."""
    a = make_model("a.gguf", load_s=0.5)
    b = make_model("b.gguf")
    settings = dataclasses.replace(settings, max_loaded_models=1, swap_grouping=grouping)

    async def scenario() -> dict[tuple[str, str], int]:
        manager = manager_for(settings, logger)

        async def use(model: Any) -> str:
            handle, status = await manager.acquire(model, None, None)
            handle.release()  # at once: the model is idle between the waiting requests
            return status

        on_a = [asyncio.create_task(use(a)) for _ in range(3)]
        await asyncio.sleep(0.1)
        on_b = asyncio.create_task(use(b))
        statuses = await asyncio.wait_for(asyncio.gather(*on_a, on_b), 30)
        assert statuses[-1] == "load"
        loads = dict(manager.loads)
        await manager.shutdown()
        return loads

    loads = run(scenario())
    assert loads[("a.gguf", "request")] == loads_of_a


@pytest.mark.parametrize("grouping", [True, False])
def test_a_swap_waits_while_the_resident_models_serve(
    settings: Any, logger: Any, make_model: Callable[..., Any], grouping: bool
) -> None:
    """swapGrouping, room for two of three models: while requests keep coming for a, c's load
    does not evict the idle b (its requests pile up for one load once a goes quiet), and a's
    requests never wait; in plain LRU order b is evicted at once."""
    a, b, c = (make_model(name) for name in ("a.gguf", "b.gguf", "c.gguf"))
    settings = dataclasses.replace(settings, max_loaded_models=2, swap_grouping=grouping)

    async def scenario() -> None:
        manager = manager_for(settings, logger)
        for model in (b, a):
            handle, _ = await manager.acquire(model, None, None)
            handle.release()
        loading = asyncio.create_task(manager.acquire(c, None, None))
        for _ in range(25):  # 2.5 s of requests for a, each at once after the last
            started = time.monotonic()
            handle, status = await manager.acquire(a, None, None)
            assert status == "exists" and time.monotonic() - started < 0.1
            await asyncio.sleep(0.1)
            handle.release()
        resident = {entry.name for entry in manager.loaded_models()}
        if grouping:
            assert not loading.done() and resident == {"a.gguf", "b.gguf"}
        else:
            assert loading.done() and resident == {"a.gguf", "c.gguf"}
        handle, status = await asyncio.wait_for(loading, 20)
        handle.release()
        assert status == "load"
        assert {entry.name for entry in manager.loaded_models()} == {"a.gguf", "c.gguf"}
        await manager.shutdown()

    run(scenario())
