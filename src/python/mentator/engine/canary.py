"""The canary's real sessions: one llama-server per tier, started the way the service starts its
children (`process.LlamaServerProcess`, the tier's `BackendChoice` environment, every layer
offloaded on a GPU tier), asked for next-token log-probabilities (``n_probs``) and timed
generations. The rule itself is `backends.canary`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from mentator.backends import catalog
from mentator.backends.canary import (
    SKIP_CANARY_ENV,
    TIER_LIMIT_S,
    CanaryReport,
    CanarySession,
    Continuation,
    SessionOpener,
    decide,
    fingerprint,
    load_cached,
    run_canary,
    save,
    skip_requested,
)
from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.engine.process import LaunchSpec, LlamaServerProcess

CANARY_CONTEXT = 512
START_TIMEOUT_S = 60.0  # the caller's per-tier limit is the real bound
REQUEST_TIMEOUT_S = 60.0
CANARY_STOP_GRACE_S = 0.5  # SIGTERM, then SIGKILL (an idle llama-server exits in ~0.05 s)


class LlamaServerSession:
    """`backends.canary.CanarySession` over a running llama-server."""

    def __init__(self, http: httpx.AsyncClient, process: LlamaServerProcess) -> None:
        self._http = http
        self.process = process

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if not self.process.alive:
            raise RuntimeError(f"llama-server exited: {self.process.output_tail(5)}")
        try:
            response = await self._http.post(f"{self.process.base_url}{path}", json=body)
        except httpx.HTTPError as error:
            tail = self.process.output_tail(5) if not self.process.alive else ""
            raise RuntimeError(f"{type(error).__name__} {error} {tail}".strip()) from error
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
        data: dict[str, Any] = response.json()
        return data

    async def tokenize(self, text: str) -> list[int]:
        data = await self._post("/tokenize", {"content": text})
        return [int(token) for token in data["tokens"]]

    async def continuation(self, tokens: Sequence[int], n: int, k: int) -> Continuation:
        # n_probs are the model's own probabilities (from the logits, before sampling);
        # ignore_eos: an end token must not cut the continuation short.
        data = await self._post(
            "/completion",
            {
                "prompt": list(tokens),
                "n_predict": n,
                "n_probs": k,
                "temperature": 0,
                "ignore_eos": True,
                "cache_prompt": True,
            },
        )
        chosen: list[int] = []
        top: list[dict[int, float]] = []
        for position in data.get("completion_probabilities") or []:
            chosen.append(int(position["id"]))
            top.append(
                {
                    int(item["id"]): float(item["logprob"])
                    for item in position.get("top_logprobs") or []
                }
            )
        timings = data.get("timings") or {}
        return Continuation(
            chosen,
            top,
            float(timings.get("predicted_ms") or 0.0),
            int(timings.get("predicted_n") or 0),
            float(timings.get("prompt_ms") or 0.0),
            int(timings.get("prompt_n") or 0),
        )

    async def speed(self, prompt: Sequence[int], tokens: int) -> tuple[float, int, float, int]:
        data = await self._post(
            "/completion",
            {
                "prompt": list(prompt),
                "n_predict": tokens,
                "temperature": 0,
                "ignore_eos": True,
                "cache_prompt": True,  # the check's prompt: the window times generation
            },
        )
        timings = data["timings"]
        return (
            float(timings["prompt_ms"]),
            int(timings["prompt_n"]),
            float(timings["predicted_ms"]),
            int(timings["predicted_n"]),
        )


def session_opener(
    layout: EngineLayout,
    model_path: Path,
    choices: Mapping[str, BackendChoice],
    *,
    threads: int | None = None,
    line_sink: Callable[[str, str], None] | None = None,
    base_environ: Mapping[str, str] | None = None,
) -> SessionOpener:
    """Opens the tier named in ``choices`` on ``model_path``; ``line_sink(tier, line)`` gets the
    engine's output (the log shows the offload lines)."""

    @contextlib.asynccontextmanager
    async def open_session(name: str) -> AsyncIterator[CanarySession]:
        choice = choices[name]
        spec = LaunchSpec(
            model_path=model_path,
            gpu_layers=999 if choice.is_gpu else None,
            context_size=CANARY_CONTEXT,
            parallel=1,
            threads=threads,
            embeddings=False,
            verbose_load=choice.is_gpu,
        )
        sink = (lambda line: line_sink(name, line)) if line_sink is not None else None
        process = LlamaServerProcess(
            layout, spec, choice, line_sink=sink, base_environ=base_environ
        )
        try:
            await process.start(START_TIMEOUT_S)
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
                yield LlamaServerSession(http, process)
        finally:
            # A canary's engine holds nothing worth an orderly exit, and llama-server sometimes
            # ignores SIGTERM for seconds (once 2.0 s of a 17.9 s canary, waiting for SIGKILL).
            await process.stop(grace_s=CANARY_STOP_GRACE_S)

    return open_session


# --- the start-up check ----------------------------------------------------------------------

CANARY_MODEL_ENV = "MENTATOR_CANARY_MODEL"


def canary_model(models: Sequence[Path], environ: Mapping[str, str]) -> Path | None:
    """The model the canary runs: ``MENTATOR_CANARY_MODEL`` when set, else the smallest model
    (the check compares backends, not models: the smallest is the quickest)."""
    named = environ.get(CANARY_MODEL_ENV, "").strip()
    if named:
        return Path(named)
    existing = [path for path in models if path.is_file()]
    return min(existing, key=lambda path: (path.stat().st_size, path.name)) if existing else None


def _file_identity(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def fingerprint_parts(
    choice: BackendChoice, layout: EngineLayout, model: Path, version: str
) -> dict[str, object]:
    """What the canary's outcome depends on: the tiers detection found (their reasons name the
    GPUs and drivers), the devices, the engine build (llama-server and each backend library),
    the image version and the model file."""
    tiers = [choice, *choice.fallbacks]
    libraries = {
        spec.name: _file_identity(layout.backend_library(spec.name)) for spec in catalog.BACKENDS
    }
    return {
        "tiers": {tier.backend: tier.reason for tier in tiers},
        "skipped": choice.skipped,
        "devices": [device.name for tier in tiers for device in tier.devices],
        "cpuVariant": choice.cpu_variant,
        "engine": _file_identity(layout.server_binary),
        "libraries": libraries,
        "image": version,
        "model": _file_identity(model),
    }


async def calibrate(
    choice: BackendChoice,
    *,
    layout: EngineLayout,
    model: Path | None,
    cache_file: Path,
    model_name: str | None = None,
    version: str,
    forced: str | None = None,
    threads: int | None = None,
    environ: Mapping[str, str] | None = None,
    line_sink: Callable[[str, str], None] | None = None,
    limit_s: float = TIER_LIMIT_S,
) -> BackendChoice:
    """Detection's ``choice`` checked by the canary (or its cached report for the same
    fingerprint): the fastest correct tier, or ``forced`` when it loaded. With no GPU tier to
    compare, no model, or ``MENTATOR_SKIP_CANARY``, detection's choice stands (a forced tier is
    then taken when detection found it usable)."""
    env = dict(os.environ if environ is None else environ)
    limit_s = _limit(env, limit_s)
    gpu_tiers = [tier for tier in [choice, *choice.fallbacks] if tier.is_gpu]
    why_not = None
    if skip_requested(env):
        why_not = f"{SKIP_CANARY_ENV} is set"
    elif not gpu_tiers:
        why_not = "no GPU tier loaded: nothing to compare the CPU with"
    elif model is None:
        why_not = "no model to run it on"
    if why_not is not None or model is None:
        report = CanaryReport(
            fingerprint="", tiers=[], chosen=choice.backend, reason="", skipped=why_not
        )
        return _forced_unchecked(replace(choice, canary=report), forced)
    key = fingerprint(fingerprint_parts(choice, layout, model, version))
    cached = load_cached(cache_file, key)
    if cached is not None:
        verdict = decide(cached.tiers, forced)
        report = replace(
            cached, chosen=verdict.chosen, reason=verdict.reason, warning=verdict.warning
        )
        return choice.with_canary(replace(report, model=model_name))
    choices = {tier.backend: tier for tier in gpu_tiers}
    choices[catalog.CPU.name] = BackendChoice(catalog.CPU.name, "canary reference")
    opener = session_opener(
        layout, model, choices, threads=threads, line_sink=line_sink, base_environ=env
    )
    report = await run_canary(
        [tier.backend for tier in gpu_tiers],
        opener,
        not_probed=choice.skipped,
        forced=forced,
        fingerprint_text=key,
        limit_s=limit_s,
    )
    report = replace(report, model=model_name)
    with contextlib.suppress(OSError):  # a read-only data folder: the canary runs next time too
        save(cache_file, report)
    return choice.with_canary(report)


LIMIT_ENV = "MENTATOR_CANARY_LIMIT_S"


def _limit(environ: Mapping[str, str], default: float) -> float:
    """``MENTATOR_CANARY_LIMIT_S``: a slow machine (or a software GPU on a busy CI runner) may
    need longer than the default per tier before a tier counts as hung."""
    try:
        value = float(environ.get(LIMIT_ENV, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _forced_unchecked(choice: BackendChoice, forced: str | None) -> BackendChoice:
    if forced is None or forced == choice.backend:
        return choice
    usable = {tier.backend: tier for tier in choice.fallbacks}
    if forced == catalog.CPU.name:
        return replace(choice.fallback_to_cpu("the config forces the CPU"), canary=choice.canary)
    if forced in usable:
        return replace(
            choice.fallback_to(usable[forced], "the config forces it"), canary=choice.canary
        )
    why = choice.skipped.get(forced, "not found")
    warning = f"backend {forced} is forced by the config but detection found it unusable: {why}"
    report = choice.canary
    return replace(choice, canary=replace(report, warning=warning) if report else None)
