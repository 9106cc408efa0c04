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
  tier's top k counts at the tier's k-th log-probability, an optimistic bound). It costs ONE
  request per tier that agrees: the CPU's reference is one greedy generation with its top-k
  at every position, and a tier's own greedy generation from the same prompt is teacher-forced
  for as long as it picks the reference tokens (`_forced` asks again from the next reference
  prefix only where it does not);
- **speed**: generation tokens per second over about `SPEED_MIN_S` of generation after the
  check's prompt (cached by then), the requests sized by the rate the tier showed in its check;
  prompt tokens per second from the check's own prompt (the tier's first prompt, one batch).

Time: the CPU tier's engine starts while the first GPU tier loads; nothing timed runs while
another tier loads or computes (`run_canary`). Each tier reports its phases.

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
import contextlib
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mentator.backends import catalog

# The fixed check. Changing any of these changes `CANARY_VERSION`, so cached reports are redone.
# 2: one request per correctness check, speed requests sized to the window; 3: a 6-token prompt;
# 4: a 2-token prompt.
CANARY_VERSION = 4
# Two tokens on purpose: ggml's Vulkan backend builds a pipeline per batch width for its
# matrix-vector shaders and compiles each at first use; llama-server's warm-up at load evaluates
# two tokens, so a 2-token prompt runs on pipelines compiled already, and any other width compiles
# its own for this one prompt (a software GPU, lavapipe on 2 cores: the 6-token prompt's check
# took 2.9-3.1 s, this one's 1.0 s; a prompt over 8 tokens also compiles the large
# matrix-matrix shaders, ~4 s more). "1," continues as a year and a count, top-1 ahead of the
# second choice by >= 0.24 nats at each of the 8 positions on the CPU (lavapipe differs by ~0.04).
PROMPT = "1,"
REFERENCE_TOKENS = 8  # positions compared under teacher forcing
TOP_K = 10
SPEED_TOKENS = 32  # generated per speed request when no rate is known yet
SPEED_MIN_S = 2.0  # speed requests repeat until this much generation time was measured...
SPEED_MAX_REQUESTS = 6  # ...or this many ran
# Bounds of one speed request (sized to the window by the rate seen so far); the prompt plus the
# largest fits the canary's context (engine/canary.py CANARY_CONTEXT).
SPEED_MIN_TOKENS = 4
SPEED_MAX_TOKENS = 400
# One request generates for at most this share of the window (by the rate seen so far): when
# other processes slow the machine down mid-request, the window overruns by this much times
# the slowdown, not by the whole window times it.
SPEED_REQUEST_SHARE = 0.5
# Correct = at least this top-1 agreement AND at most this mean |Δ log-prob| (nats). Measured
# here: lavapipe vs CPU on SmolLM2-135M agrees 8/8 with a mean difference well under 0.1; a
# backend computing garbage agrees on ~0 positions and differs by several nats.
MIN_TOP1_AGREEMENT = 0.75
MAX_MEAN_LOGPROB_DIFF = 0.5
# A tier whose load and check take longer than this is stopped and reported as hung.
TIER_LIMIT_S = 30.0

CACHE_FILE_NAME = "backend-canary.json"
SKIP_CANARY_ENV = "MENTATOR_SKIP_CANARY"


@dataclass(frozen=True)
class Continuation:
    """A greedy generation after a prefix: the tokens chosen and, before each, the k most likely
    next tokens (token id → log-probability of the model's own distribution, before any
    sampling), with the generation time as the engine measured it."""

    tokens: list[int]
    top: list[dict[int, float]]
    gen_ms: float = 0.0
    gen_n: int = 0
    prompt_ms: float = 0.0  # the prompt tokens the engine evaluated (not taken from its cache)
    prompt_n: int = 0


class CanarySession(Protocol):
    """One tier's engine, loaded with the canary model (engine/canary.py; doubles in tests)."""

    async def tokenize(self, text: str) -> list[int]: ...

    async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
        """``n`` greedy tokens after ``tokens`` with the top ``k`` log-probabilities before each
        (ONE request: the positions of a greedy continuation need no request each)."""
        ...

    async def speed(self, prompt: Sequence[int], tokens: int) -> tuple[float, int, float, int]:
        """One greedy generation of ``tokens`` tokens after ``prompt`` (the check's prompt,
        which the engine has cached): (prompt ms, prompt tokens, generation ms, generated
        tokens) as the engine timed them."""
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
    # Seconds per phase: load (engine start incl. a GPU's shader compiles), correctness, speed,
    # stop. ``seconds`` is their sum; the canary's own ``seconds`` is wall time (phases overlap).
    phases: dict[str, float] = field(default_factory=dict)

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
            "phases": {f"{name}S": round(value, 2) for name, value in self.phases.items()},
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
            phases={
                str(name).removesuffix("S"): float(value)
                for name, value in dict(data.get("phases") or {}).items()
            },
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
    if forced == chosen:
        # Say so even when the canary agrees: the next start may measure otherwise, and a reader
        # must know the choice is the config's, not the speeds'.
        return Verdict(chosen, f"{listed} → {chosen} (forced by the config; also {why})", None)
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


def _rate(ms: float, n: int) -> float | None:
    return n * 1000 / ms if ms > 0 and n > 0 else None


@dataclass(frozen=True)
class _Rates:
    """What a tier's check showed: its generation rate (a first guess for the speed window's
    size) and its prompt speed (the check's prompt: the tier's first, evaluated in one batch)."""

    gen: float | None = None
    prompt: float | None = None


async def _reference(session: CanarySession) -> tuple[_Reference, _Rates]:
    """The CPU's greedy continuation with its top-k at every position: ONE generation (the
    positions of a greedy continuation are the teacher-forced positions of itself)."""
    prompt = await session.tokenize(PROMPT)
    got = await session.continuation(prompt, REFERENCE_TOKENS, TOP_K)
    if not got.top or not all(got.top):
        raise RuntimeError("the CPU engine returned no log-probabilities")
    positions = min(len(got.tokens), len(got.top), REFERENCE_TOKENS)
    reference = _Reference(prompt, list(got.tokens[:positions]), list(got.top[:positions]))
    return reference, _Rates(_rate(got.gen_ms, got.gen_n), _rate(got.prompt_ms, got.prompt_n))


async def _forced(
    session: CanarySession, reference: _Reference
) -> tuple[list[dict[int, float]], _Rates]:
    """The tier's top-k at every position of the CPU's continuation under teacher forcing.

    The tier continues greedily from the prompt; as long as its own choice is the reference
    token, its next position's prefix IS the teacher-forced one, so one generation answers all
    positions of a tier that agrees. Where it chooses another token, the position is recorded and
    the next generation starts from the reference prefix of the following position: at most one
    request per position (a tier computing garbage), exactly the numbers the per-position
    requests would give."""
    wanted = reference.continuation
    tops: list[dict[int, float]] = []
    gen_ms, gen_n = 0.0, 0
    prompt: float | None = None
    while len(tops) < len(wanted):
        done = len(tops)
        got = await session.continuation(
            [*reference.tokens, *wanted[:done]], len(wanted) - done, TOP_K
        )
        if not got.top or not got.tokens:
            raise RuntimeError("the engine returned no log-probabilities")
        gen_ms, gen_n = gen_ms + got.gen_ms, gen_n + got.gen_n
        if done == 0:
            prompt = _rate(got.prompt_ms, got.prompt_n)
        for token, top in zip(got.tokens, got.top, strict=False):
            tops.append(top)
            if len(tops) == len(wanted) or token != wanted[len(tops) - 1]:
                break
    return tops, _Rates(_rate(gen_ms, gen_n), prompt)


def _speed_tokens(rate: float | None, seconds: float) -> int:
    """Tokens for one speed request so that it generates for about ``seconds``."""
    if rate is None:
        return SPEED_TOKENS
    return max(SPEED_MIN_TOKENS, min(SPEED_MAX_TOKENS, math.ceil(rate * seconds)))


async def _speed(
    session: CanarySession,
    prompt: Sequence[int],
    clock: Callable[[], float],
    rate_hint: float | None = None,
) -> float:
    """Generation tokens per second as the engine timed them, over requests that repeat until
    `SPEED_MIN_S` of generation (engine time) or of wall time has passed. ``prompt`` is the
    check's, which the engine has cached: the window is generation, not a prompt again (a
    software GPU takes longer for a 60-token prompt than for 2 s of generation). Each request
    asks for as many tokens as the rate seen so far (first: ``rate_hint``, the check's own
    generation) fills in half the window or what is left of it, so a slow tier does not
    generate for 4 s where 2 s are asked, and a fast one needs two requests, not one per
    32 tokens."""
    started = clock()
    gen_ms = 0.0
    gen_n = 0
    for _ in range(SPEED_MAX_REQUESTS):
        rate = _rate(gen_ms, gen_n) or rate_hint
        left = max(SPEED_MIN_S - gen_ms / 1000, 0.0)
        seconds = min(left, SPEED_MIN_S * SPEED_REQUEST_SHARE)
        _, _, g_ms, g_n = await session.speed(prompt, _speed_tokens(rate, seconds))
        gen_ms, gen_n = gen_ms + g_ms, gen_n + g_n
        if gen_ms / 1000 >= SPEED_MIN_S or clock() - started >= SPEED_MIN_S:
            break
    return gen_n * 1000 / gen_ms if gen_ms > 0 else 0.0


class _TierRun:
    """One tier through its phases (load, correctness, speed, stop), each timed; the tier's
    limit bounds the sum of its own phases, not the time it waits for another tier's."""

    def __init__(
        self, name: str, open_session: SessionOpener, limit_s: float, clock: Callable[[], float]
    ) -> None:
        self.name = name
        self._open = open_session
        self._limit_s = limit_s
        self._clock = clock
        self._context: AbstractAsyncContextManager[CanarySession] | None = None
        self.session: CanarySession | None = None
        self.loaded = False
        self.problem: str | None = None
        self.phases: dict[str, float] = {}
        self.correctness: Correctness | None = None
        self.rates = _Rates()
        self.prompt: list[int] = []

    @property
    def spent(self) -> float:
        return sum(self.phases.values())

    async def _timed(self, phase: str, work: Callable[[], Awaitable[None]]) -> bool:
        """Run one phase within what is left of the limit; False (and ``problem``) if it
        failed. A failed tier's engine is stopped."""
        if self.problem is not None:
            return False
        started = self._clock()
        try:
            async with asyncio.timeout(max(self._limit_s - self.spent, 0.001)):
                await work()
        except TimeoutError:
            stage = "during the check" if self.loaded else "while loading"
            self.problem = f"hung {stage}: no result within {self._limit_s:g} s (stopped)"
        except Exception as error:  # a crash of the engine or of its answers: the tier is out
            stage = "crashed during the canary" if self.loaded else "failed to load"
            detail = f"{type(error).__name__}: {error}".strip()
            self.problem = f"{stage} ({_short(detail)})"
        self.phases[phase] = self.phases.get(phase, 0.0) + self._clock() - started
        if self.problem is not None:
            await self.close()
            return False
        return True

    async def load(self) -> bool:
        async def enter() -> None:
            context = self._open(self.name)
            self.session = await context.__aenter__()
            self._context = context
            self.loaded = True

        return await self._timed("load", enter)

    async def close(self) -> None:
        context, self._context, self.session = self._context, None, None
        if context is None:
            return
        started = self._clock()
        with contextlib.suppress(Exception):
            await context.__aexit__(None, None, None)
        self.phases["stop"] = self.phases.get("stop", 0.0) + self._clock() - started

    async def reference(self) -> _Reference | None:
        found: list[_Reference] = []

        async def work() -> None:
            assert self.session is not None
            reference, self.rates = await _reference(self.session)
            self.prompt = reference.tokens
            self.correctness = compare(reference.continuation, reference.cpu, reference.cpu)
            found.append(reference)

        ok = await self._timed("correctness", work)
        return found[0] if ok else None

    async def check(self, reference: _Reference) -> bool:
        async def work() -> None:
            assert self.session is not None
            positions, self.rates = await _forced(self.session, reference)
            self.prompt = reference.tokens
            self.correctness = compare(reference.continuation, reference.cpu, positions)

        return await self._timed("correctness", work)

    async def result(self) -> TierResult:
        """The speed window (the tier alone on the machine), the engine stopped, the result."""
        speeds: list[float] = []

        async def work() -> None:
            assert self.session is not None
            speeds.append(await _speed(self.session, self.prompt, self._clock, self.rates.gen))

        await self._timed("speed", work)
        await self.close()
        # Rounded here, as the report stores it: the reason's "8.4 t/s" and the JSON's 8.35 would
        # otherwise be two roundings of 8.3549 ("8.3" from the stored figure, a cached report's).
        gen_tps = _round(speeds[0]) if speeds else None
        phases = {key: round(value, 2) for key, value in self.phases.items()}
        if self.problem is not None:
            return TierResult(
                self.name, True, self.loaded, self.problem, phases=phases, seconds=self.spent
            )
        return TierResult(
            self.name,
            True,
            True,
            None,
            self.correctness,
            self.rates.prompt,
            gen_tps,
            seconds=self.spent,
            phases=phases,
        )


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
    decide. ``not_probed`` are the tiers detection already ruled out, with why.

    What overlaps and what does not: the CPU tier's engine starts while the first GPU tier's
    loads (engine starts are not timed figures). Everything timed — the check's prompt, whose
    speed is reported, and every speed window — runs with no other tier loading or computing
    (the other engines sit idle or are stopped): on a machine of 2 cores, where a software GPU's
    shader compiles take both, a CPU figure measured beside them would be wrong. GPU tiers load
    one after the other (two of them on one GPU must not compete for its memory)."""
    started = clock()
    gpus = [t for t in dict.fromkeys(tiers) if t != catalog.CPU.name]
    cpu = _TierRun(catalog.CPU.name, open_session, limit_s, clock)
    runs = {name: _TierRun(name, open_session, limit_s, clock) for name in gpus}
    first = runs[gpus[0]] if gpus else None

    try:
        await asyncio.gather(cpu.load(), *([first.load()] if first is not None else []))
        reference = await cpu.reference() if cpu.loaded else None
        results = [await cpu.result()]
        for name in gpus:
            run = runs[name]
            if reference is None:
                await run.close()
                results.append(
                    TierResult(name, True, False, "not checked: the CPU reference failed")
                )
                continue
            if run is first or await run.load():
                await run.check(reference)
            results.append(await run.result())
    finally:  # cancelled (or a bug): no engine is left running
        for run in [cpu, *runs.values()]:
            await run.close()
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
