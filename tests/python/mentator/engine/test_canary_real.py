"""The canary against the REAL llama-server (MENTATOR_ENGINE_DIR) and SmolLM2 (MENTATOR_TEST_MODEL):
the CPU makes the reference and measures itself; a second tier runs the same engine but answers
through a corrupted session (token ids shifted: a backend that loads and computes wrong
numbers) and must be found wrong."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from mentator.backends.canary import CanarySession, Continuation, run_canary
from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.engine.canary import calibrate, session_opener

pytestmark = pytest.mark.integration

CPU = BackendChoice(backend="cpu", reason="test")


class Corrupted:
    """A session whose log-probabilities belong to other tokens."""

    def __init__(self, inner: CanarySession) -> None:
        self.inner = inner

    async def tokenize(self, text: str) -> list[int]:
        return await self.inner.tokenize(text)

    async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
        got = await self.inner.continuation(tokens, n, k)
        shifted = [{token + 7: logprob for token, logprob in top.items()} for top in got.top]
        return Continuation([t + 7 for t in got.tokens], shifted, got.gen_ms, got.gen_n)

    async def speed(self, prompt: Sequence[int], tokens: int) -> tuple[float, int, float, int]:
        return await self.inner.speed(prompt, tokens)


def test_real_cpu_is_correct_and_a_corrupted_tier_is_not(
    engine_dir: Path, test_model: Path
) -> None:
    lines: list[tuple[str, str]] = []
    real = session_opener(
        EngineLayout(engine_dir),
        test_model,
        {"cpu": CPU, "vulkan": CPU},
        threads=2,
        line_sink=lambda tier, line: lines.append((tier, line)),
    )

    @contextlib.asynccontextmanager
    async def opener(name: str) -> AsyncIterator[CanarySession]:
        async with real(name) as session:
            yield session if name == "cpu" else Corrupted(session)

    report = asyncio.run(run_canary(["vulkan"], opener, limit_s=120))
    cpu = next(tier for tier in report.tiers if tier.name == "cpu")
    vulkan = next(tier for tier in report.tiers if tier.name == "vulkan")
    print("canary:", *report.lines(), sep="\n")
    assert cpu.problem is None and cpu.correct, report.reason
    assert cpu.correctness is not None and cpu.correctness.positions == 8
    assert cpu.gen_tps and cpu.prompt_tps
    assert vulkan.loaded and not vulkan.correct
    assert report.chosen == "cpu"
    assert "vulkan: WRONG numbers" in report.reason
    assert any(tier == "cpu" and "starting:" in line for tier, line in lines)


def test_real_engine_failing_to_load_is_reported(tmp_path: Path, test_model: Path) -> None:
    broken = tmp_path / "model.gguf"
    broken.write_bytes(b"GGUF but not really")
    opener = session_opener(EngineLayout(Path(__file__).parent), broken, {"cpu": CPU})
    report = asyncio.run(run_canary([], opener, limit_s=30))
    assert report.chosen == "cpu"
    assert report.tiers[0].problem is not None
    assert report.tiers[0].problem.startswith("failed to load")


def test_calibrate_runs_once_then_answers_from_the_cache(
    tmp_path: Path, engine_dir: Path, test_model: Path
) -> None:
    """A "vulkan" tier on the CPU-only engine runs on the CPU (llama-server ignores the layer
    offload without a GPU backend): correct, about as fast. The second start is a cache hit and
    a forced tier is decided from the cached numbers."""
    vulkan = BackendChoice(backend="vulkan", reason="Vulkan device (test)")
    cache = tmp_path / "data" / "backend-canary.json"
    kwargs = {
        "layout": EngineLayout(engine_dir),
        "model": test_model,
        "cache_file": cache,
        "version": "test",
        "threads": 2,
        "environ": {},
    }
    first = asyncio.run(calibrate(vulkan, **kwargs))  # type: ignore[arg-type]
    assert first.canary is not None and not first.canary.cached
    assert cache.is_file()
    tiers = {tier.name: tier for tier in first.canary.tiers}
    assert tiers["vulkan"].correct and tiers["cpu"].correct, first.canary.reason
    assert first.backend == first.canary.chosen
    started = time.monotonic()
    # Both tiers run on the CPU here: force the one the speeds did not pick.
    forced = "vulkan" if first.backend == "cpu" else "cpu"
    second = asyncio.run(calibrate(vulkan, forced=forced, **kwargs))  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0
    assert second.canary is not None and second.canary.cached
    assert second.backend == forced
    assert f"→ {forced} (forced by the config" in second.canary.reason
    skipped = asyncio.run(
        calibrate(vulkan, **{**kwargs, "environ": {"MENTATOR_SKIP_CANARY": "1"}})  # type: ignore[arg-type]
    )
    assert skipped.backend == "vulkan"
    assert skipped.canary is not None and skipped.canary.skipped == "MENTATOR_SKIP_CANARY is set"
