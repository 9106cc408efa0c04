"""The backend canary: which usable backend gives right answers, and which of those is fastest.

A probe and a library load prove that a backend starts, not that it computes right or that it
beats the CPU it replaces. So every tier that loaded runs one short fixed check on the same model:

- **correctness** against the CPU backend, under teacher forcing: the CPU's greedy continuation
  of a fixed prompt is the reference; every tier is fed the same prompt plus the first i
  reference tokens and reports its top-k log-probabilities for position i. Two floating-point
  orders never give identical numbers (the greedy *texts* of lavapipe and the CPU part after
  four tokens), but a working backend puts the reference token at the top nearly everywhere and
  gives it nearly the same log-probability; a broken one does neither. The measure:
  top-1 agreement (share of positions whose top token is the reference token) and the mean
  absolute log-probability difference of the reference token (nats; a token missing from the
  tier's top k counts at the tier's k-th log-probability, an optimistic bound);
- **speed**: prompt and generation tokens per second over a short generation.

The fastest correct tier is chosen (`decide`); a forced tier (config ``backend``) is used as long
as it loaded, with a warning when the canary found it wrong or slower. The report, with every
tier's numbers, is cached by a fingerprint of the hardware, drivers, engine build, image version
and model (`fingerprint`, `load_cached`, `save`), so a restart costs nothing.

`run_canary` drives the check through a `CanarySession` per tier (engine/canary.py runs a real
llama-server; the tests pass doubles that compute wrong numbers, crash or hang). Nothing here
imports from the rest of the service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from mentator.backends import catalog

# The fixed check. Changing any of these changes `CANARY_VERSION`, so cached reports are redone.
CANARY_VERSION = 1
PROMPT = "The capital of France is Paris. The capital of Germany is"
REFERENCE_TOKENS = 8  # positions compared under teacher forcing
TOP_K = 10
SPEED_PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
SPEED_TOKENS = 32  # generated per speed request
SPEED_MIN_S = 2.0  # speed requests repeat until this much engine time was measured...
SPEED_MAX_REQUESTS = 6  # ...or this many ran
# Correct = at least this top-1 agreement AND at most this mean |Δ log-prob| (nats). Measured
# here: lavapipe vs CPU on SmolLM2-135M agrees 8/8 with a mean difference well under 0.1; a
# backend computing garbage agrees on ~0 positions and differs by several nats.
MIN_TOP1_AGREEMENT = 0.75
MAX_MEAN_LOGPROB_DIFF = 0.5
# A tier whose load and check take longer than this is stopped and reported as hung.
TIER_LIMIT_S = 30.0

CACHE_FILE_NAME = "backend-canary.json"
SKIP_CANARY_ENV = "MENTATOR_SKIP_CANARY"


class CanarySession(Protocol):
    """One tier's engine, loaded with the canary model (engine/canary.py; doubles in tests)."""

    async def tokenize(self, text: str) -> list[int]: ...

    async def top_logprobs(self, tokens: Sequence[int], k: int) -> dict[int, float]:
        """Token id → log-probability of the k most likely next tokens after ``tokens``."""
        ...

    async def speed(self, prompt: str, tokens: int) -> tuple[float, int, float, int]:
        """One greedy generation of ``tokens`` tokens after ``prompt``:
        (prompt ms, prompt tokens, generation ms, generated tokens) as the engine timed them."""
        ...


# Opens a tier's session (starting its engine: the "load"); leaving it stops the engine.
SessionOpener = Callable[[str], AbstractAsyncContextManager[CanarySession]]


@dataclass(frozen=True)
class Correctness:
    """How a tier's next-token distribution matches the CPU's on the reference continuation."""

    top1_agreement: float
    mean_logprob_diff: float
    positions: int

    @property
    def ok(self) -> bool:
        return (
            self.top1_agreement >= MIN_TOP1_AGREEMENT
            and self.mean_logprob_diff <= MAX_MEAN_LOGPROB_DIFF
        )

    def describe(self) -> str:
        agree = round(self.top1_agreement * self.positions)
        return f"top-1 {agree}/{self.positions}, mean |Δlogprob| {self.mean_logprob_diff:.3f}"

    def to_json(self) -> dict[str, object]:
        return {
            "top1Agreement": round(self.top1_agreement, 4),
            "meanLogprobDiff": round(self.mean_logprob_diff, 4),
            "positions": self.positions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Correctness:
        return cls(
            float(data["top1Agreement"]), float(data["meanLogprobDiff"]), int(data["positions"])
        )


def compare(
    reference: Sequence[int],
    cpu: Sequence[Mapping[int, float]],
    tier: Sequence[Mapping[int, float]],
) -> Correctness:
    """The measure (module docstring): ``cpu[i]`` / ``tier[i]`` are the top-k log-probabilities
    at position i, ``reference[i]`` the token the CPU chose there."""
    positions = min(len(reference), len(cpu), len(tier))
    if positions == 0:
        return Correctness(0.0, math.inf, 0)
    agree = 0
    diffs = []
    for token, cpu_top, tier_top in zip(reference, cpu, tier, strict=False):
        if tier_top and max(tier_top, key=lambda t: tier_top[t]) == token:
            agree += 1
        floor = min(tier_top.values()) if tier_top else -math.inf
        diffs.append(abs(tier_top.get(token, floor) - cpu_top[token]))
    return Correctness(agree / positions, sum(diffs) / positions, positions)


@dataclass(frozen=True)
class TierResult:
    """One tier's canary: ``problem`` says why it is out (probe, load, crash, hang)."""

    name: str
    probed: bool
    loaded: bool
    problem: str | None = None
    correctness: Correctness | None = None
    prompt_tps: float | None = None
    gen_tps: float | None = None
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return self.correctness is not None and self.correctness.ok

    @property
    def usable(self) -> bool:
        return self.loaded and self.problem is None and self.correct and bool(self.gen_tps)

    def summary(self) -> str:
        """One tier in words: "vulkan: correct, 5.9 t/s"."""
        if self.problem is not None:
            return f"{self.name}: {self.problem}"
        if self.correctness is None:
            return f"{self.name}: not checked"
        speed = f"{self.gen_tps:.1f} t/s" if self.gen_tps else "no speed"
        if self.name == catalog.CPU.name:
            return f"{self.name}: {speed}"
        if not self.correctness.ok:
            return f"{self.name}: WRONG numbers ({self.correctness.describe()}), {speed}"
        return f"{self.name}: correct ({self.correctness.describe()}), {speed}"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "probed": self.probed,
            "loaded": self.loaded,
            "correct": self.correct if self.correctness is not None else None,
            "correctness": self.correctness.to_json() if self.correctness else None,
            "promptTokensPerSecond": _round(self.prompt_tps),
            "tokensPerSecond": _round(self.gen_tps),
            "seconds": round(self.seconds, 2),
            "problem": self.problem,
            "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TierResult:
        correctness = data.get("correctness")
        return cls(
            name=str(data["name"]),
            probed=bool(data["probed"]),
            loaded=bool(data["loaded"]),
            problem=str(data["problem"]) if data.get("problem") is not None else None,
            correctness=Correctness.from_json(correctness) if correctness else None,
            prompt_tps=_float_or_none(data.get("promptTokensPerSecond")),
            gen_tps=_float_or_none(data.get("tokensPerSecond")),
            seconds=float(data.get("seconds") or 0.0),
        )


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Verdict:
    chosen: str
    reason: str
    warning: str | None = None


def _order(name: str) -> int:
    names = [spec.name for spec in catalog.BACKENDS]
    return names.index(name) if name in names else len(names)


def decide(tiers: Sequence[TierResult], forced: str | None = None) -> Verdict:
    """The fastest correct tier (ties: the catalog's order); the CPU when none is usable.

    The reason lists every tier then the choice: "vulkan: correct, 5.9 t/s; cpu: 13.1 t/s →
    cpu, 2.2x faster". ``forced`` (config ``backend``) wins when it loaded; the warning says
    when the canary found it wrong or slower, or that it is not available.
    """
    listed = "; ".join(tier.summary() for tier in sorted(tiers, key=lambda t: _order(t.name)))
    usable = sorted(
        (tier for tier in tiers if tier.usable),
        key=lambda t: (-(t.gen_tps or 0.0), _order(t.name)),
    )
    best = usable[0] if usable else None
    if best is None:
        chosen = catalog.CPU.name
        why = "no tier passed the canary"
    else:
        chosen = best.name
        runner_up = usable[1] if len(usable) > 1 else None
        if runner_up is not None and runner_up.gen_tps:
            why = f"{(best.gen_tps or 0.0) / runner_up.gen_tps:.1f}x faster than {runner_up.name}"
        else:
            why = "the only correct tier"
    warning = None
    if forced is not None and forced != chosen:
        tier = next((t for t in tiers if t.name == forced), None)
        if tier is None or tier.correctness is None:
            problem = tier.problem if tier is not None and tier.problem else "not available"
            warning = f"backend {forced} is forced by the config but {problem}; using {chosen}"
        else:
            what = "gives WRONG numbers" if not tier.correct else "is slower"
            speeds = _speeds(tier, best)
            warning = (
                f"backend {forced} is forced by the config but the canary says it {what}{speeds}"
            )
            return Verdict(forced, f"{listed} → {forced} (forced by the config)", warning)
    return Verdict(chosen, f"{listed} → {chosen}, {why}", warning)


def _speeds(tier: TierResult, best: TierResult | None) -> str:
    if best is None or not tier.gen_tps or not best.gen_tps:
        return ""
    return f" ({tier.gen_tps:.1f} t/s vs {best.gen_tps:.1f} t/s on {best.name})"


@dataclass(frozen=True)
class CanaryReport:
    """The canary's outcome as cached and shown (/state.backend.canary, --explain)."""

    fingerprint: str
    tiers: list[TierResult]
    chosen: str
    reason: str
    warning: str | None = None
    seconds: float = 0.0
    cached: bool = False
    skipped: str | None = None  # why no canary ran (the skip variable, no model)
    model: str | None = None  # the model it ran on (the tripwire compares only its requests)

    @property
    def calibrated_tps(self) -> float | None:
        """The chosen tier's generation speed (the run-time tripwire compares against it)."""
        tier = next((t for t in self.tiers if t.name == self.chosen), None)
        return tier.gen_tps if tier is not None else None

    def lines(self) -> list[str]:
        """The report in words, one line per tier then the choice (--explain, the log)."""
        if self.skipped:
            return [f"canary: skipped ({self.skipped})"]
        source = " (cached)" if self.cached else f" ({self.seconds:.1f} s)"
        out = [f"canary{source}:"]
        for tier in sorted(self.tiers, key=lambda t: _order(t.name)):
            state = "probed" if tier.probed else "not probed"
            state += ", loaded" if tier.loaded else ", not loaded"
            out.append(f"  {tier.summary()} [{state}]")
        out.append(f"  → {self.reason.rsplit(' → ', 1)[-1]}")
        if self.warning:
            out.append(f"  WARNING: {self.warning}")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "chosen": self.chosen,
            "reason": self.reason,
            "warning": self.warning,
            "seconds": round(self.seconds, 2),
            "cached": self.cached,
            "skipped": self.skipped,
            "model": self.model,
            "calibratedTokensPerSecond": _round(self.calibrated_tps),
            "tiers": [tier.to_json() for tier in self.tiers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CanaryReport:
        return cls(
            fingerprint=str(data["fingerprint"]),
            tiers=[TierResult.from_json(item) for item in data.get("tiers") or []],
            chosen=str(data["chosen"]),
            reason=str(data["reason"]),
            warning=str(data["warning"]) if data.get("warning") else None,
            seconds=float(data.get("seconds") or 0.0),
            cached=bool(data.get("cached")),
            skipped=str(data["skipped"]) if data.get("skipped") else None,
            model=str(data["model"]) if data.get("model") else None,
        )


def fingerprint(parts: Mapping[str, object]) -> str:
    """A short hash of what the canary's outcome depends on (hardware, drivers, engine build,
    image version, model) plus `CANARY_VERSION`."""
    text = json.dumps({"canary": CANARY_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_cached(path: Path, expected: str) -> CanaryReport | None:
    """The cached report when its fingerprint is ``expected``; None otherwise (or unreadable)."""
    try:
        report = CanaryReport.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return replace(report, cached=True) if report.fingerprint == expected else None


def save(path: Path, report: CanaryReport) -> None:
    """Write the report atomically (a crash mid-write leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    partial.replace(path)


# --- running it -------------------------------------------------------------------------------


@dataclass
class _Reference:
    tokens: list[int]  # the prompt
    continuation: list[int]
    cpu: list[dict[int, float]]


async def _positions(
    session: CanarySession, prompt: Sequence[int], continuation: Sequence[int]
) -> list[dict[int, float]]:
    return [
        await session.top_logprobs([*prompt, *continuation[:i]], TOP_K)
        for i in range(len(continuation))
    ]


async def _reference(session: CanarySession) -> _Reference:
    """The CPU's greedy continuation with its top-k at every position."""
    prompt = await session.tokenize(PROMPT)
    continuation: list[int] = []
    cpu: list[dict[int, float]] = []
    for _ in range(REFERENCE_TOKENS):
        top = await session.top_logprobs([*prompt, *continuation], TOP_K)
        if not top:
            raise RuntimeError("the CPU engine returned no log-probabilities")
        cpu.append(top)
        continuation.append(max(top, key=lambda t: top[t]))
    return _Reference(prompt, continuation, cpu)


async def _speed(session: CanarySession, clock: Callable[[], float]) -> tuple[float, float]:
    """Prompt and generation tokens per second as the engine timed them, over requests that
    repeat until `SPEED_MIN_S` of engine time or of wall time has passed."""
    started = clock()
    prompt_ms = gen_ms = 0.0
    prompt_n = gen_n = 0
    for _ in range(SPEED_MAX_REQUESTS):
        p_ms, p_n, g_ms, g_n = await session.speed(SPEED_PROMPT, SPEED_TOKENS)
        prompt_ms, prompt_n = prompt_ms + p_ms, prompt_n + p_n
        gen_ms, gen_n = gen_ms + g_ms, gen_n + g_n
        if (prompt_ms + gen_ms) / 1000 >= SPEED_MIN_S or clock() - started >= SPEED_MIN_S:
            break
    prompt_tps = prompt_n * 1000 / prompt_ms if prompt_ms > 0 else 0.0
    gen_tps = gen_n * 1000 / gen_ms if gen_ms > 0 else 0.0
    return prompt_tps, gen_tps


async def _one_tier(
    name: str,
    open_session: SessionOpener,
    reference: _Reference | None,
    limit_s: float,
    clock: Callable[[], float],
) -> tuple[TierResult, _Reference | None]:
    started = clock()
    loaded = False
    try:
        async with asyncio.timeout(limit_s):
            async with open_session(name) as session:
                loaded = True
                if reference is None:
                    reference = await _reference(session)
                    positions = reference.cpu
                else:
                    positions = await _positions(session, reference.tokens, reference.continuation)
                correctness = compare(reference.continuation, reference.cpu, positions)
                prompt_tps, gen_tps = await _speed(session, clock)
    except TimeoutError:
        stage = "during the check" if loaded else "while loading"
        problem = f"hung {stage}: no result within {limit_s:g} s (stopped)"
        return TierResult(name, True, loaded, problem, seconds=clock() - started), reference
    except Exception as error:  # a crash of the engine or of its answers: the tier is out
        stage = "crashed during the canary" if loaded else "failed to load"
        detail = f"{type(error).__name__}: {error}".strip()
        problem = f"{stage} ({_short(detail)})"
        return TierResult(name, True, loaded, problem, seconds=clock() - started), reference
    result = TierResult(
        name, True, True, None, correctness, prompt_tps, gen_tps, seconds=clock() - started
    )
    return result, reference


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def run_canary(
    tiers: Sequence[str],
    open_session: SessionOpener,
    *,
    not_probed: Mapping[str, str] | None = None,
    forced: str | None = None,
    fingerprint_text: str = "",
    limit_s: float = TIER_LIMIT_S,
    clock: Callable[[], float] = time.monotonic,
) -> CanaryReport:
    """Check ``tiers`` (the CPU first: it makes the reference; it is added when missing) and
    decide. ``not_probed`` are the tiers detection already ruled out, with why."""
    started = clock()
    order = [catalog.CPU.name, *(t for t in tiers if t != catalog.CPU.name)]
    results: list[TierResult] = []
    reference: _Reference | None = None
    for name in order:
        if name != catalog.CPU.name and reference is None:
            results.append(TierResult(name, True, False, "not checked: the CPU reference failed"))
            continue
        result, reference = await _one_tier(name, open_session, reference, limit_s, clock)
        results.append(result)
    for name, why in (not_probed or {}).items():
        results.append(TierResult(name, "failed to load" in why, False, why))
    verdict = decide(results, forced)
    return CanaryReport(
        fingerprint=fingerprint_text,
        tiers=sorted(results, key=lambda t: _order(t.name)),
        chosen=verdict.chosen,
        reason=verdict.reason,
        warning=verdict.warning,
        seconds=clock() - started,
    )


def skip_requested(environ: Mapping[str, str]) -> bool:
    """The documented way to start instantly: ``MENTATOR_SKIP_CANARY=1``."""
    return environ.get(SKIP_CANARY_ENV, "").strip().lower() in {"1", "true", "yes"}
