"""Several models resident at once (issue 21), against the REAL llama-server and SmolLM2.

Links to the one test model under other names are different models to the service (as copies
would be), each served by its own child. Small contexts keep each child near 150 MB."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mentator.backends.choice import BackendChoice
from mentator.engine.errors import ModelTooLargeError
from mentator.engine.manager import EngineManager
from mentator.engine.ports import CompletionRequest
from mentator.engine.warm import WarmStore
from mentator.memory import available_memory_mb, memory_usage
from mentator.models.discovery import ModelInfo, scan_models

pytestmark = pytest.mark.integration

CPU = BackendChoice(backend="cpu", reason="test")
CONTEXT = 1024
SHORT = {"temperature": 0, "topK": 1, "maxTokens": 4, "seed": 1}


@dataclass(frozen=True)
class Settings:
    engine_dir: Path
    parallel: int = 1
    threads: int | None = 1
    max_loaded_models: int = 2
    memory_budget_mb: int = 0
    vram_budget_mb: int = 0
    keep_alive_sec: int = -1
    swap_grouping: bool = True
    cancel_on_disconnect: bool = True


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, pipe: str, message: str, extra: str | None = None) -> None:
        self.lines.append(("error", message))

    def debug(self, pipe: str, message: str, extra: str | None = None) -> None:
        self.lines.append(("debug", message))

    def trace(self, pipe: str, message: str, extra: str | None = None) -> None:
        pass


def models_named(folder: Path, test_model: Path, *names: str) -> dict[str, ModelInfo]:
    """The test model linked under each name, as the model scan sees them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.gguf").symlink_to(test_model.absolute())
    return {model.name.removesuffix(".gguf"): model for model in scan_models(folder)}


def manager_for(engine_dir: Path, **limits: Any) -> EngineManager:
    return EngineManager(
        Settings(engine_dir, **limits),
        CPU,
        Logger(),
        start_timeout_s=120,
        free_memory_mb=available_memory_mb,
    )


async def ask(manager: EngineManager, model: ModelInfo, keep_alive_s: float | None = None) -> str:
    """One short completion; the load status it got."""
    handle, status = await manager.acquire(model, None, CONTEXT, keep_alive_s)
    try:
        await handle.complete(CompletionRequest([{"role": "user", "content": "Hi"}], SHORT))
    finally:
        handle.release()
    return status


def resident_names(manager: EngineManager) -> set[str]:
    return {entry.name for entry in manager.loaded_models()}


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie not reaped yet counts as gone: it holds no memory.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def pid_of(manager: EngineManager, name: str) -> int:
    pid = manager._residents[name].process.pid  # - the test watches the child
    assert pid is not None
    return pid


async def eventually(check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_lru_with_two_resident_models(engine_dir: Path, test_model: Path, tmp_path: Path) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b", "c")

    async def scenario() -> None:
        manager = manager_for(engine_dir, max_loaded_models=2)
        try:
            assert await ask(manager, models["a"]) == "load"
            assert await ask(manager, models["b"]) == "load"
            assert await ask(manager, models["a"]) == "exists"  # both resident: no swap
            reports = await manager.kv_caches()  # the metrics' KV gauges, one per model
            assert sorted(report.model for report in reports) == ["a.gguf", "b.gguf"]
            pid_b = pid_of(manager, "b.gguf")
            assert await ask(manager, models["c"]) == "load"  # b is the least recently used
            assert resident_names(manager) == {"a.gguf", "c.gguf"}
            await eventually(lambda: process_gone(pid_b))
            assert manager.evictions == {("b.gguf", "capacity"): 1}
            assert await ask(manager, models["a"]) == "exists"
        finally:
            await manager.shutdown()

    run(scenario)


def test_a_model_over_the_budget_is_refused_with_sizes(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b")

    async def scenario() -> None:
        # ~94 MB weights + 23 MB KV (1024 tokens) + 64 MB buffers: about 181 MB each.
        manager = manager_for(engine_dir, max_loaded_models=3, memory_budget_mb=150)
        try:
            with pytest.raises(ModelTooLargeError) as refused:
                await manager.acquire(models["a"], None, CONTEXT)
            message = refused.value.message
            assert 'model "a.gguf" cannot be loaded' in message
            assert "more than memoryBudgetMb 150 MB" in message
            assert "weights 94 MB" in message and "KV cache 23 MB for 1024 tokens" in message
            assert manager.loaded_models() == []
        finally:
            await manager.shutdown()

        # Room for one: the second model takes the first one's place although maxLoadedModels
        # would allow three.
        manager = manager_for(engine_dir, max_loaded_models=3, memory_budget_mb=300)
        try:
            assert await ask(manager, models["a"]) == "load"
            assert await ask(manager, models["b"]) == "load"
            assert resident_names(manager) == {"b.gguf"}
            assert manager.evictions == {("a.gguf", "memory"): 1}
        finally:
            await manager.shutdown()

    run(scenario)


def test_keep_alive_expiry_unloads_the_child(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b")

    async def scenario() -> None:
        manager = manager_for(engine_dir, max_loaded_models=2)
        try:
            assert await ask(manager, models["b"]) == "load"  # the default: until evicted
            assert await ask(manager, models["a"], keep_alive_s=1) == "load"
            # Read at once (no await since the request ended): a is still resident.
            pid_a = pid_of(manager, "a.gguf")
            two_children_mb = memory_usage().external_mb  # the children's RSS
            (entry,) = (e for e in manager.loaded_models() if e.name == "a.gguf")
            assert entry.expires_at is not None and entry.expires_at > entry.last_used_at
            await eventually(lambda: "a.gguf" not in resident_names(manager))
            await eventually(lambda: process_gone(pid_a))
            # The memory is returned: one child's RSS (tens of MB at least) is gone.
            assert memory_usage().external_mb < two_children_mb - 20
            assert resident_names(manager) == {"b.gguf"}
            assert manager.evictions == {("a.gguf", "expired"): 1}
            # keepAlive 0: unloaded as soon as its request is done.
            pid_b = pid_of(manager, "b.gguf")
            assert await ask(manager, models["b"], keep_alive_s=0) == "exists"
            await eventually(lambda: process_gone(pid_b))
            assert manager.loaded_models() == []
        finally:
            await manager.shutdown()

    run(scenario)


def test_a_pinned_model_is_never_evicted_nor_expired(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b", "c")

    async def scenario() -> None:
        manager = manager_for(engine_dir, max_loaded_models=2)
        manager.pin(["a.gguf"])
        try:
            assert await manager.load(models["a"], None, CONTEXT) == "load"
            assert await ask(manager, models["a"], keep_alive_s=0) == "exists"
            assert await ask(manager, models["b"]) == "load"
            assert await ask(manager, models["c"]) == "load"  # a is older, but pinned: b goes
            assert resident_names(manager) == {"a.gguf", "c.gguf"}
            await asyncio.sleep(0.5)
            (pinned,) = (e for e in manager.loaded_models() if e.name == "a.gguf")
            assert pinned.pinned and pinned.expires_at is None
        finally:
            await manager.shutdown()

    run(scenario)


def test_a_killed_child_fails_no_request_of_another_model(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b")

    async def scenario() -> None:
        manager = manager_for(engine_dir, max_loaded_models=2, parallel=2)
        try:
            assert await ask(manager, models["a"]) == "load"
            assert await ask(manager, models["b"]) == "load"
            pid_b = pid_of(manager, "b.gguf")

            async def on_a(index: int) -> str:
                handle, status = await manager.acquire(models["a"], None, CONTEXT)
                try:
                    result = await handle.complete(
                        CompletionRequest(
                            [{"role": "user", "content": f"Count to {index + 5}."}],
                            {**SHORT, "maxTokens": 24},
                        )
                    )
                finally:
                    handle.release()
                assert result.completion_tokens > 0
                return status

            jobs = [asyncio.create_task(on_a(index)) for index in range(4)]
            await asyncio.sleep(0.3)
            os.kill(pid_b, signal.SIGKILL)
            assert await asyncio.gather(*jobs) == ["exists"] * 4
            # b's next request restarts only b.
            assert await ask(manager, models["b"]) == "load"
            assert manager.restarts() == {"b.gguf": 1}
            assert resident_names(manager) == {"a.gguf", "b.gguf"}
        finally:
            await manager.shutdown()

    run(scenario)


def test_concurrent_first_requests_cause_one_load(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a")

    async def scenario() -> None:
        manager = manager_for(engine_dir, max_loaded_models=2, parallel=2)
        try:
            statuses = await asyncio.gather(*(ask(manager, models["a"]) for _ in range(4)))
            assert sorted(statuses) == ["exists", "exists", "exists", "load"]
            assert manager.loads == {("a.gguf", "request"): 1}
        finally:
            await manager.shutdown()

    run(scenario)


LONG_CHAT = [
    {"role": "system", "content": "You are a careful assistant who answers briefly."},
    {
        "role": "user",
        "content": " ".join(
            f"Fact {index}: the lighthouse keeper logged ship number {index * 7} at dawn."
            for index in range(25)
        )
        + " Which ship number was logged for fact 3?",
    },
]
GREEDY = {"temperature": 0, "topK": 1, "maxTokens": 12, "seed": 1}


def test_warm_swap_restores_the_chat_with_the_same_greedy_answer(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    models = models_named(tmp_path / "m", test_model, "a", "b")
    assert models["a"].kv_restore_safe  # SmolLM2: plain attention

    async def chat(manager: EngineManager) -> tuple[str, str, float]:
        handle, status = await manager.acquire(models["a"], None, CONTEXT)
        try:
            result = await handle.complete(CompletionRequest(LONG_CHAT, GREEDY))
        finally:
            handle.release()
        return status, result.text, result.timings["prompt_n"]

    async def scenario() -> None:
        store = WarmStore(tmp_path / "kv-cache", 512)
        manager = EngineManager(
            Settings(engine_dir, max_loaded_models=1),
            CPU,
            Logger(),
            start_timeout_s=120,
            warm=store,
        )
        try:
            status, cold_text, cold_prompt_n = await chat(manager)
            assert status == "load" and cold_prompt_n > 300
            assert await ask(manager, models["b"]) == "load"  # evicts a: its slot is saved
            assert len(list(store.folder.glob("*.kv"))) == 1
            status, warm_text, warm_prompt_n = await chat(manager)
            assert status == "load"  # a new child...
            assert warm_text == cold_text  # ...that answers as the cold prefill did
            assert warm_prompt_n < 10  # without reading the chat again
        finally:
            await manager.shutdown()

    run(scenario)
