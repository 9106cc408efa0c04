"""The canary's rule with engine doubles: a tier that computes wrong numbers, crashes during the
check, hangs past its limit, or is much slower than the CPU; the measure; the cache."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from mentator.backends import canary
from mentator.backends.canary import (
    CanaryReport,
    CanarySession,
    Continuation,
    Correctness,
    TierResult,
    compare,
    decide,
    run_canary,
)

VOCAB = 50


def _true_logprobs(tokens: Sequence[int]) -> dict[int, float]:
    """A deterministic model: the next-token distribution depends on the whole prefix."""
    rng = random.Random(hash(tuple(tokens)))
    logits = [rng.gauss(0.0, 3.0) for _ in range(VOCAB)]
    top = max(logits)
    norm = top + math.log(sum(math.exp(x - top) for x in logits))
    return {token: logit - norm for token, logit in enumerate(logits)}


def _top(logprobs: dict[int, float], k: int) -> dict[int, float]:
    return dict(sorted(logprobs.items(), key=lambda item: -item[1])[:k])


@dataclass
class FakeEngine:
    """One tier: ``noise`` is the floating-point difference to the CPU (small = a working
    backend), ``garbage`` computes unrelated numbers, ``crash``/``hang`` fail mid-check."""

    tokens_per_s: float
    noise: float = 0.0
    garbage: bool = False
    crash: bool = False
    hang: bool = False
    fail_load: bool = False

    async def tokenize(self, text: str) -> list[int]:
        return [ord(char) % VOCAB for char in text[:12]]

    async def top_logprobs(self, tokens: Sequence[int], k: int) -> dict[int, float]:
        if self.crash:
            raise RuntimeError("llama-server exited (code -11): ggml_vulkan: device lost")
        if self.hang:
            await asyncio.sleep(3600)
        if self.garbage:
            return _top(_true_logprobs([*tokens, 999]), k)
        rng = random.Random(len(tokens))
        exact = _true_logprobs(tokens)
        return _top({t: lp + rng.uniform(-self.noise, self.noise) for t, lp in exact.items()}, k)

    async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
        chosen: list[int] = []
        tops = []
        for _ in range(n):
            top = await self.top_logprobs([*tokens, *chosen], k)
            tops.append(top)
            chosen.append(max(top, key=lambda t: top[t]))
        return Continuation(chosen, tops, n * 1000 / self.tokens_per_s, n)

    async def speed(self, prompt: Sequence[int], tokens: int) -> tuple[float, int, float, int]:
        gen_ms = tokens * 1000 / self.tokens_per_s
        return gen_ms / 4, 60, gen_ms, tokens


def _opener(engines: dict[str, FakeEngine]) -> canary.SessionOpener:
    @contextlib.asynccontextmanager
    async def open_session(name: str) -> AsyncIterator[CanarySession]:
        engine = engines[name]
        if engine.fail_load:
            raise RuntimeError("ggml_vulkan: no device")
        yield engine

    return open_session


def _run(engines: dict[str, FakeEngine], **kwargs: object) -> CanaryReport:
    tiers = [name for name in engines if name != "cpu"]
    return asyncio.run(run_canary(tiers, _opener(engines), **kwargs))  # type: ignore[arg-type]


def _tier(report: CanaryReport, name: str) -> TierResult:
    return next(tier for tier in report.tiers if tier.name == name)


def test_a_correct_faster_gpu_is_chosen() -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(40.0, noise=0.02)})
    assert report.chosen == "vulkan"
    assert _tier(report, "vulkan").correct
    assert report.reason.endswith("→ vulkan, 3.1x faster than cpu")


def test_a_backend_computing_wrong_numbers_is_not_chosen() -> None:
    report = _run({"cpu": FakeEngine(13.1), "cuda": FakeEngine(200.0, garbage=True)})
    cuda = _tier(report, "cuda")
    assert cuda.loaded and not cuda.correct
    assert cuda.correctness is not None and cuda.correctness.top1_agreement < 0.5
    assert report.chosen == "cpu"
    assert "cuda: WRONG numbers (top-1" in report.reason
    assert report.reason.endswith("→ cpu, the only correct tier")


def test_a_backend_crashing_during_the_canary_is_not_chosen() -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(40.0, crash=True)})
    vulkan = _tier(report, "vulkan")
    assert vulkan.loaded and vulkan.problem is not None
    assert vulkan.problem.startswith("crashed during the canary (RuntimeError: llama-server exited")
    assert report.chosen == "cpu"
    assert "vulkan: crashed during the canary" in report.reason


def test_a_backend_that_fails_to_load_is_reported_as_such() -> None:
    report = _run({"cpu": FakeEngine(13.1), "rocm": FakeEngine(40.0, fail_load=True)})
    rocm = _tier(report, "rocm")
    assert not rocm.loaded
    assert rocm.problem == "failed to load (RuntimeError: ggml_vulkan: no device)"
    assert report.chosen == "cpu"


def test_a_backend_hanging_past_its_limit_is_stopped_and_not_chosen() -> None:
    engines = {"cpu": FakeEngine(13.1), "cuda": FakeEngine(90.0, hang=True)}
    report = _run(engines, limit_s=0.2)
    cuda = _tier(report, "cuda")
    assert cuda.problem == "hung during the check: no result within 0.2 s (stopped)"
    assert report.chosen == "cpu"
    assert report.seconds < 5


def test_a_correct_backend_much_slower_than_the_cpu_is_not_chosen() -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(5.9, noise=0.02)})
    assert _tier(report, "vulkan").correct
    assert report.chosen == "cpu"
    assert "vulkan: correct (top-1 8/8" in report.reason
    assert report.reason.endswith("cpu: 13.1 t/s → cpu, 2.2x faster than vulkan")


def test_the_fastest_of_several_correct_tiers_wins() -> None:
    engines = {
        "cpu": FakeEngine(13.1),
        "cuda": FakeEngine(20.0, noise=0.02),
        "vulkan": FakeEngine(60.0, noise=0.02),
    }
    report = _run(engines)
    assert report.chosen == "vulkan"
    assert report.reason.endswith("→ vulkan, 3.0x faster than cuda")


def test_a_forced_tier_is_used_with_a_warning_when_slower() -> None:
    engines = {"cpu": FakeEngine(13.1), "vulkan": FakeEngine(5.9, noise=0.02)}
    report = _run(engines, forced="vulkan")
    assert report.chosen == "vulkan"
    assert report.warning == (
        "backend vulkan is forced by the config but the canary says it is slower"
        " (5.9 t/s vs 13.1 t/s on cpu)"
    )


def test_a_forced_tier_the_canary_also_chose_is_named_forced_without_a_warning() -> None:
    engines = {"cpu": FakeEngine(13.1), "vulkan": FakeEngine(30.0, noise=0.02)}
    report = _run(engines, forced="vulkan")
    assert report.chosen == "vulkan"
    assert report.warning is None
    assert report.reason.endswith(
        "→ vulkan (forced by the config; also 2.3x faster than cpu)"
    ), report.reason


def test_a_forced_tier_that_did_not_load_falls_back_with_a_warning() -> None:
    engines = {"cpu": FakeEngine(13.1), "cuda": FakeEngine(40.0, fail_load=True)}
    report = _run(engines, forced="cuda")
    assert report.chosen == "cpu"
    assert report.warning is not None
    assert report.warning.startswith("backend cuda is forced by the config but failed to load")


def test_tiers_ruled_out_by_detection_are_listed() -> None:
    report = _run({"cpu": FakeEngine(13.1)}, not_probed={"cuda": "no NVIDIA GPU"})
    cuda = _tier(report, "cuda")
    assert not cuda.probed and not cuda.loaded
    assert "cuda: no NVIDIA GPU" in report.reason
    assert report.chosen == "cpu"


def test_the_measure_tolerates_float_noise_and_catches_garbage() -> None:
    prompt = [1, 2, 3]
    reference: list[int] = []
    cpu = []
    for _ in range(8):
        top = _top(_true_logprobs(prompt + reference), 10)
        cpu.append(top)
        reference.append(max(top, key=lambda t: top[t]))
    noisy = [
        _top(
            {
                t: lp + 0.01 * ((t % 3) - 1)
                for t, lp in _true_logprobs(prompt + reference[:i]).items()
            },
            10,
        )
        for i in range(8)
    ]
    assert compare(reference, cpu, noisy).ok
    wrong = [_top(_true_logprobs([7, *reference[:i]]), 10) for i in range(8)]
    measure = compare(reference, cpu, wrong)
    assert not measure.ok
    assert not compare([], [], []).ok


def test_decide_with_no_usable_tier_takes_the_cpu() -> None:
    verdict = decide([TierResult("cpu", True, False, "failed to load (no binary)")])
    assert verdict.chosen == "cpu"
    assert verdict.reason.endswith("→ cpu, no tier passed the canary")


def test_the_cache_is_used_only_for_the_same_fingerprint(tmp_path: Path) -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(5.9, noise=0.02)})
    report = CanaryReport(**{**report.__dict__, "fingerprint": "abc"})
    path = tmp_path / "data" / canary.CACHE_FILE_NAME
    canary.save(path, report)
    cached = canary.load_cached(path, "abc")
    assert cached is not None and cached.cached
    assert cached.to_json() == {**report.to_json(), "cached": True}
    assert canary.load_cached(path, "other") is None
    path.write_text("{not json", encoding="utf-8")
    assert canary.load_cached(path, "abc") is None


def test_the_fingerprint_changes_with_any_part() -> None:
    base = {"devices": ["llvmpipe"], "engine": "build 1", "image": "1.2.0"}
    assert canary.fingerprint(base) == canary.fingerprint(dict(base))
    assert canary.fingerprint(base) != canary.fingerprint({**base, "engine": "build 2"})


def test_the_explanation_lists_every_tier() -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(5.9, noise=0.02)})
    lines = report.lines()
    assert lines[0].startswith("canary (")
    assert lines[1].startswith("  vulkan: correct (top-1 8/8") and lines[1].endswith(
        "5.9 t/s [probed, loaded]"
    )
    assert lines[2] == "  cpu: 13.1 t/s [probed, loaded]"
    assert lines[3] == "  → cpu, 2.2x faster than vulkan"


def test_skip_variable() -> None:
    assert canary.skip_requested({"MENTATOR_SKIP_CANARY": "1"})
    assert not canary.skip_requested({})


def test_correctness_round_trips() -> None:
    value = Correctness(0.875, 0.0123, 8)
    assert Correctness.from_json(value.to_json()) == value


# --- how the check runs: one request per agreeing tier, a sized speed window, what overlaps ---


@dataclass
class Counting(FakeEngine):
    """Counts the engine's requests and the tokens each speed request asked for."""

    continuations: int = 0
    speed_tokens: list[int] | None = None

    async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
        self.continuations += 1
        return await super().continuation(tokens, n, k)

    async def speed(self, prompt: Sequence[int], tokens: int) -> tuple[float, int, float, int]:
        self.speed_tokens = [*(self.speed_tokens or []), tokens]
        return await super().speed(prompt, tokens)


def test_an_agreeing_tier_is_checked_with_one_request_and_the_same_numbers() -> None:
    cpu, vulkan = Counting(13.1), Counting(5.9, noise=0.02)
    report = _run({"cpu": cpu, "vulkan": vulkan})
    assert cpu.continuations == 1 and vulkan.continuations == 1
    assert _tier(report, "vulkan").correct


def test_teacher_forcing_restarts_at_every_position_a_tier_disagrees() -> None:
    """A tier computing garbage never follows the reference: every position is asked with the
    reference prefix (one request each), and the numbers are those of per-position requests."""
    garbage = Counting(40.0, garbage=True)
    forced_tops: list[dict[int, float]] = []
    reference, _ = asyncio.run(canary._reference(FakeEngine(13.1)))
    tops, _ = asyncio.run(canary._forced(garbage, reference))
    for i in range(len(reference.continuation)):
        prefix = [*reference.tokens, *reference.continuation[:i]]
        forced_tops.append(asyncio.run(garbage.top_logprobs(prefix, canary.TOP_K)))
    assert garbage.continuations == canary.REFERENCE_TOKENS
    assert tops == forced_tops
    assert not compare(reference.continuation, reference.cpu, tops).ok


def test_the_speed_window_is_sized_by_the_rate_seen() -> None:
    """A slow tier generates for about the window (5.9 t/s, 2 s: 12 tokens), not 32 tokens
    (5.4 s); a fast one fills the window with two requests instead of one per 32 tokens."""
    slow, fast = Counting(5.9, noise=0.02), Counting(150.0)
    report = _run({"cpu": fast, "vulkan": slow})
    half = canary.SPEED_MIN_S / 2
    assert slow.speed_tokens == [math.ceil(5.9 * half)] * 2
    assert fast.speed_tokens == [math.ceil(150.0 * half)] * 2
    assert _tier(report, "vulkan").gen_tps == pytest.approx(5.9)


@dataclass
class Timeline:
    """What each tier's engine was doing when: ("load"|"check"|"speed", tier, start, end)."""

    spans: list[tuple[str, str, float, float]]

    def busy(self, kind: str, name: str) -> list[tuple[float, float]]:
        return [(a, b) for k, n, a, b in self.spans if k == kind and n == name]


def _timed_opener(
    engines: dict[str, FakeEngine], load_s: float, timeline: Timeline
) -> canary.SessionOpener:
    @contextlib.asynccontextmanager
    async def open_session(name: str) -> AsyncIterator[CanarySession]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(load_s)
        timeline.spans.append(("load", name, started, loop.time()))
        engine = engines[name]

        class Timed:
            async def tokenize(self, text: str) -> list[int]:
                return await engine.tokenize(text)

            async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
                begun = loop.time()
                await asyncio.sleep(0.02)
                timeline.spans.append(("check", name, begun, loop.time()))
                return await engine.continuation(tokens, n, k)

            async def speed(
                self, prompt: Sequence[int], tokens: int
            ) -> tuple[float, int, float, int]:
                begun = loop.time()
                await asyncio.sleep(0.02)
                timeline.spans.append(("speed", name, begun, loop.time()))
                return await engine.speed(prompt, tokens)

        yield Timed()

    return open_session


def test_the_cpu_starts_during_the_first_gpu_load_but_nothing_timed_overlaps_a_load() -> None:
    engines = {
        "cpu": FakeEngine(13.1),
        "cuda": FakeEngine(40.0, noise=0.02),
        "vulkan": FakeEngine(20.0, noise=0.02),
    }
    timeline = Timeline([])
    opener = _timed_opener(engines, 0.1, timeline)
    report = asyncio.run(run_canary(["cuda", "vulkan"], opener))
    assert report.chosen == "cuda"
    (cpu_load,) = timeline.busy("load", "cpu")
    (cuda_load,) = timeline.busy("load", "cuda")
    assert cuda_load[0] < cpu_load[1], "the first GPU tier loads while the CPU tier loads"
    loads = [(a, b) for kind, _, a, b in timeline.spans if kind == "load"]
    for kind, name, start, end in timeline.spans:
        if kind != "load":  # the check's prompt and the speed window are timed figures
            overlapping = [(a, b) for a, b in loads if a < end and start < b]
            assert not overlapping, f"{name}'s {kind} overlaps a load: {timeline.spans}"
    (vulkan_load,) = timeline.busy("load", "vulkan")
    assert vulkan_load[0] >= max(b for _, b in timeline.busy("speed", "cuda"))
    assert report.seconds < 0.1 * 3 + 0.5  # three loads of 0.1 s, two of them at once


def test_every_tier_reports_its_phases() -> None:
    report = _run({"cpu": FakeEngine(13.1), "vulkan": FakeEngine(5.9, noise=0.02)})
    for tier in report.tiers:
        assert set(tier.phases) == {"load", "correctness", "speed", "stop"}, tier
        assert abs(sum(tier.phases.values()) - tier.seconds) < 0.05
    data = _tier(report, "vulkan").to_json()
    phases = data["phases"]
    assert isinstance(phases, dict)
    assert set(phases) == {"loadS", "correctnessS", "speedS", "stopS"}
    assert TierResult.from_json(data).to_json() == data


def test_a_first_gpu_tier_hanging_while_loading_is_stopped_and_the_cpu_still_measured() -> None:
    @contextlib.asynccontextmanager
    async def opener(name: str) -> AsyncIterator[CanarySession]:
        if name == "cuda":
            await asyncio.sleep(3600)
        yield FakeEngine(13.1)

    report = asyncio.run(run_canary(["cuda"], opener, limit_s=0.2))
    cuda = _tier(report, "cuda")
    assert cuda.problem == "hung while loading: no result within 0.2 s (stopped)"
    assert _tier(report, "cpu").gen_tps == pytest.approx(13.1)
    assert report.chosen == "cpu"
