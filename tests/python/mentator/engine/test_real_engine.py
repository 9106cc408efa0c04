"""The engine layer against the REAL llama-server (MENTATOR_ENGINE_DIR) and SmolLM2
(MENTATOR_TEST_MODEL). The `engine_dir` / `test_model` fixtures (tests/python/mentator/conftest.py)
skip these tests when either is missing locally and fail them in CI."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mentator.backends.choice import BackendChoice
from mentator.engine.errors import EngineExitedError
from mentator.engine.manager import EngineManager
from mentator.engine.ports import CompletionRequest
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend

pytestmark = pytest.mark.integration

CPU = BackendChoice(backend="cpu", reason="test")
GREEDY = {"temperature": 0, "topK": 1, "maxTokens": 24, "seed": 1}
SMOLLM2_135M_WIDTH = 576  # n_embd of SmolLM2-135M


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    size_kb: int
    pooling_type: int | None = None
    layer_count: int | None = None
    context_length: int | None = None
    kv_bytes_per_token: int | None = None
    kv_restore_safe: bool = False


@dataclass(frozen=True)
class Settings:
    engine_dir: Path
    parallel: int = 2
    threads: int | None = 2
    max_loaded_models: int = 1
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
        self.lines.append(("trace", message))


def model_of(path: Path) -> Model:
    return Model(path.name, path, math.ceil(path.stat().st_size / 1024))


def user(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": text},
    ]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_detection_on_this_machine_reports_the_cpu_variant(engine_dir: Path) -> None:
    env = ProbeEnv.from_environ({"PATH": os.environ.get("PATH", "")}, engine_dir=engine_dir)
    choice = select_backend(env)
    if choice.backend == "cpu":
        assert choice.cpu_variant, choice.reason  # parsed from ggml's "loaded CPU backend" line


def test_completion_grammar_embedding_and_stream(engine_dir: Path, test_model: Path) -> None:
    logger = Logger()

    async def scenario() -> None:
        manager = EngineManager(Settings(engine_dir), CPU, logger, start_timeout_s=120)
        model = model_of(test_model)
        async with manager.use(model, None, 1024) as (handle, status):
            assert status == "load"
            result = await handle.complete(
                CompletionRequest(user("What is the capital of France?"), GREEDY)
            )
            assert result.text.strip()
            assert result.finish_reason in {"stop", "length"}
            assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 24
            assert result.timings.get("predicted_n") == result.completion_tokens

            constrained = await handle.complete(
                CompletionRequest(
                    user("Is the sky blue? Answer yes or no."),
                    GREEDY,
                    grammar='root ::= "yes" | "no"',
                )
            )
            assert constrained.text in {"yes", "no"}

            # The KV cache as llama-server's /slots reports it: 2 slots of 1024 tokens, and the
            # tokens the last conversations left in them.
            kv = await manager.kv_cache()
            assert kv is not None and kv.model == model.name
            assert (kv.slots, kv.capacity_tokens) == (2, 2048)
            assert result.prompt_tokens <= kv.used_tokens <= kv.capacity_tokens

            shaped = await handle.complete(
                CompletionRequest(
                    user("Give a digit."),
                    {**GREEDY, "maxTokens": 32},
                    grammar='root ::= "{\\"digit\\": " [0-9] "}"',
                )
            )
            assert set(json.loads(shaped.text)) == {"digit"}

            streamed = [
                d async for d in handle.stream(CompletionRequest(user("Say hello."), GREEDY))
            ]
            assert "".join(d.text for d in streamed).strip()
            assert streamed[-1].finish_reason in {"stop", "length"} or any(
                d.finish_reason for d in streamed
            )

        # Embedding right after a completion with a contextSize: same child, no reload.
        async with manager.use(model, None, 1024) as (handle, status):
            assert status == "exists"
            vector = await handle.embed("The quick brown fox")
            assert len(vector) == SMOLLM2_135M_WIDTH
            assert all(math.isfinite(x) for x in vector)
            assert abs(math.sqrt(sum(x * x for x in vector)) - 1.0) > 1e-3  # not normalised
            assert await handle.embed("") == []
        await manager.shutdown()

    run(scenario())
    assert any(
        "load model to memory" in message for level, message in logger.lines if level == "debug"
    )
    assert any("model loaded" in message for level, message in logger.lines if level == "trace")


def _decode_calls(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("llamacpp:n_decode_total"):
            return float(line.split()[-1])
    raise AssertionError(f"no llamacpp:n_decode_total in /metrics: {metrics_text[:300]}")


async def _wait_for_slot(
    http: httpx.AsyncClient, condition: Callable[[dict[str, Any]], bool], within_s: float
) -> dict[str, Any]:
    """The first /slots entry once it meets ``condition``, polled every 0.1 s."""
    deadline = time.monotonic() + within_s
    while True:
        slot: dict[str, Any] = (await http.get("/slots")).json()[0]
        if condition(slot):
            return slot
        assert time.monotonic() < deadline, f"/slots after {within_s:.0f} s: {slot}"
        await asyncio.sleep(0.1)


def _generating(slot: dict[str, Any]) -> bool:
    """Past the prompt: a token decoded (``next_token`` is a list in recent llama-servers)."""
    tokens = slot.get("next_token") or []
    tokens = tokens if isinstance(tokens, list) else [tokens]
    return bool(slot.get("is_processing")) and any(t.get("n_decoded", 0) > 0 for t in tokens)


def test_closing_the_request_stops_the_generation(engine_dir: Path, test_model: Path) -> None:
    """A whole (not streamed) completion whose caller left stops at once, even while the engine
    answers other requests. The /slots polls stand for that other traffic (other slots' tokens,
    the stat page): each one wakes llama-server's wait for results, and a whole answer's
    connection is only checked after a 1 s wait that nothing woke, so with the answer read in
    one piece the engine never noticed the closed connection while they went on (the test used
    to pass only when its cancel came before the first such check)."""
    max_tokens = 6000  # the grammar never ends, so the model would generate all of them

    async def scenario() -> None:
        manager = EngineManager(
            Settings(engine_dir, parallel=1), CPU, Logger(), start_timeout_s=120
        )
        async with manager.use(model_of(test_model), None, 8192) as (handle, _):
            long_job = asyncio.create_task(
                handle.complete(
                    CompletionRequest(
                        user("Write a very long story about a dragon."),
                        {"temperature": 0.8, "maxTokens": max_tokens, "seed": 3},
                        # A right-recursive rule has no end: the end of text is never allowed.
                        grammar="root ::= [a-z ,.] root",
                    )
                )
            )
            async with httpx.AsyncClient(base_url=handle.client.base_url) as http:
                # Leave while it generates: a busy machine can take seconds over the prompt.
                await _wait_for_slot(http, _generating, within_s=120)
                long_job.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await long_job
                # The engine stops at its next token; the bound only allows for a busy machine
                # (unnoticed, the generation would run on to maxTokens).
                await _wait_for_slot(http, lambda slot: not slot["is_processing"], within_s=30)
                decoded = _decode_calls((await http.get("/metrics")).text)
                await asyncio.sleep(1.0)
                assert _decode_calls((await http.get("/metrics")).text) == decoded  # stopped
                assert decoded < max_tokens  # stopped early, not at the end
            quick = await handle.complete(CompletionRequest(user("Hi"), {**GREEDY, "maxTokens": 4}))
            assert quick.completion_tokens <= 4
        await manager.shutdown()

    run(scenario())


def test_kill_mid_request_gives_an_engine_error_and_the_next_acquire_restarts(
    engine_dir: Path, test_model: Path
) -> None:
    async def scenario() -> None:
        manager = EngineManager(
            Settings(engine_dir, parallel=1), CPU, Logger(), start_timeout_s=120
        )
        model = model_of(test_model)
        handle, _ = await manager.acquire(model, None, 2048)
        job = asyncio.create_task(
            handle.complete(
                CompletionRequest(
                    user("Write a long essay about the sea."), {"maxTokens": 2000, "seed": 5}
                )
            )
        )
        await asyncio.sleep(1.0)
        pid = handle.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            EngineExitedError, match=r"engine process exited unexpectedly \(code -9\)"
        ):
            await job
        handle.release()
        again, status = await manager.acquire(model, None, 2048)
        try:
            assert status == "load"
            assert manager.restarts() == {model.name: 1}
            assert (
                await again.complete(CompletionRequest(user("Hi"), {**GREEDY, "maxTokens": 4}))
            ).text
        finally:
            again.release()
            await manager.shutdown()

    run(scenario())
