"""The rules of keeping several models resident: what one model is estimated to need, whether it
fits next to the others, which idle model to evict. Pure functions and values, no processes:
`manager.EngineManager` applies them, and the tests check them without an engine.

Estimate (from the GGUF header, `models.gguf_info`): the weights (the file size) plus the KV cache
(`kv_bytes_per_token` * the context tokens the child allocates: ``contextSize`` * ``parallel``, or
without a ``contextSize`` the model's trained context, capped at `DEFAULT_CONTEXT_CAP` because
llama-server's ``--fit`` shrinks a default context that does not fit) plus a fixed allowance for
compute buffers (`OVERHEAD_MB`). On a GPU backend the share of the layers offloaded
(``gpulayer`` / layers; no ``gpulayer`` = all) goes to VRAM, split evenly over the devices, and the
rest to host RAM.

Limits (`Budget`): ``maxLoadedModels``; host RAM: ``memoryBudgetMb`` (0 = no fixed cap) and, at
each load, the memory measured free (``MemAvailable``); VRAM per GPU: ``vramBudgetMb`` (0 = the
device's free memory at the start, when known).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MIB = 1024 * 1024
OVERHEAD_MB = 64  # compute buffers and the process itself, measured ~40-60 MB on small models
DEFAULT_CONTEXT_CAP = 32768
# A model whose header does not give the KV geometry: assume this much KV per token (a 7-8B
# model with grouped-query attention needs ~128 KiB per token in f16).
UNKNOWN_KV_BYTES_PER_TOKEN = 128 * 1024

# Why a model left memory (the label of the evictions metric, the log line).
REASON_CAPACITY = "capacity"  # maxLoadedModels reached
REASON_MEMORY = "memory"  # the budget or the free memory needed the room
REASON_EXPIRED = "expired"  # keep-alive passed
REASON_RELOAD = "reload"  # other gpulayer/contextSize asked
REASON_CRASHED = "crashed"  # its child died
REASON_REQUESTED = "requested"  # the unload operation of the API
REASON_SHUTDOWN = "shutdown"


class SizedModel(Protocol):
    """What the estimate reads of a model (`models.discovery.ModelInfo`)."""

    @property
    def size_kb(self) -> int: ...

    @property
    def layer_count(self) -> int | None: ...

    @property
    def context_length(self) -> int | None: ...

    @property
    def kv_bytes_per_token(self) -> int | None: ...


@dataclass(frozen=True)
class MemoryNeed:
    """One model's estimated memory, in MB: ``host_mb`` in RAM, ``vram_mb`` on EACH GPU."""

    weights_mb: int
    kv_mb: int
    context_tokens: int
    host_mb: int
    vram_mb: int

    @property
    def total_mb(self) -> int:
        return self.weights_mb + self.kv_mb + OVERHEAD_MB

    def describe(self) -> str:
        text = (
            f"estimated {self.total_mb} MB (weights {self.weights_mb} MB + KV cache "
            f"{self.kv_mb} MB for {self.context_tokens} tokens + {OVERHEAD_MB} MB buffers)"
        )
        if self.vram_mb:
            text += f"; {self.host_mb} MB in RAM, {self.vram_mb} MB per GPU"
        return text


def estimate_need(
    model: SizedModel,
    gpulayer: float | None,
    context_size: int | None,
    parallel: int,
    gpus: int,
) -> MemoryNeed:
    """``gpus`` = 0 on the CPU backend (everything in RAM)."""
    weights_mb = math.ceil(model.size_kb / 1024)
    if context_size is not None:
        tokens = context_size * max(1, parallel)
    else:
        tokens = min(model.context_length or 4096, DEFAULT_CONTEXT_CAP)
    per_token = model.kv_bytes_per_token or UNKNOWN_KV_BYTES_PER_TOKEN
    kv_mb = math.ceil(per_token * tokens / MIB)
    offloaded = 0.0
    if gpus > 0:
        layers = model.layer_count
        if gpulayer is None or not layers:
            offloaded = 1.0
        else:
            # llama.cpp counts the output layer as one more offloadable layer.
            offloaded = min(1.0, math.floor(gpulayer) / (layers + 1))
    device_mb = (weights_mb + kv_mb) * offloaded
    vram_mb = math.ceil(device_mb / gpus) if gpus > 0 else 0
    host_mb = math.ceil(weights_mb + kv_mb - device_mb) + OVERHEAD_MB
    return MemoryNeed(weights_mb, kv_mb, tokens, host_mb, vram_mb)


@dataclass(frozen=True)
class Budget:
    """The limits (None: no limit of that kind)."""

    max_loaded: int
    host_mb: int | None
    vram_mb: int | None  # per GPU

    def describe(self) -> str:
        parts = [f"maxLoadedModels {self.max_loaded}"]
        parts.append(f"memoryBudgetMb {self.host_mb}" if self.host_mb else "no memoryBudgetMb")
        if self.vram_mb:
            parts.append(f"VRAM budget {self.vram_mb} MB per GPU")
        return ", ".join(parts)


def refusal(need: MemoryNeed, budget: Budget, host_free_mb: int | None) -> str | None:
    """Why the model cannot be loaded even with nothing else resident (None: it could)."""
    if budget.host_mb and need.host_mb > budget.host_mb:
        return f"needs {need.host_mb} MB of RAM, more than memoryBudgetMb {budget.host_mb} MB"
    if budget.vram_mb and need.vram_mb > budget.vram_mb:
        return f"needs {need.vram_mb} MB of VRAM per GPU, more than the budget {budget.vram_mb} MB"
    if host_free_mb is not None and need.host_mb > host_free_mb:
        return f"needs {need.host_mb} MB of RAM, only {host_free_mb} MB are free"
    return None


def shortfall(
    need: MemoryNeed,
    resident: Sequence[MemoryNeed],
    budget: Budget,
    host_free_mb: int | None,
) -> str | None:
    """What stops loading ``need`` next to ``resident`` now (None: it fits): the count, the
    budgets (the estimates summed) or the memory measured free (which already reflects what the
    residents use)."""
    if len(resident) + 1 > budget.max_loaded:
        return REASON_CAPACITY
    if budget.host_mb and sum(r.host_mb for r in resident) + need.host_mb > budget.host_mb:
        return REASON_MEMORY
    if budget.vram_mb and sum(r.vram_mb for r in resident) + need.vram_mb > budget.vram_mb:
        return REASON_MEMORY
    if host_free_mb is not None and need.host_mb > host_free_mb:
        return REASON_MEMORY
    return None


class Evictable(Protocol):
    @property
    def use_order(self) -> int: ...

    @property
    def pinned(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...


def least_recently_used[E: Evictable](candidates: Sequence[E]) -> E | None:
    """The idle, unpinned model used longest ago (None: every model is pinned or busy)."""
    idle = [c for c in candidates if not c.pinned and c.in_flight == 0]
    return min(idle, key=lambda c: c.use_order) if idle else None


# --- anti-thrash grouping (`swapGrouping`) ----------------------------------------------------
# A swap (evicting a model to load another) waits while the resident models are serving: the
# requests that keep coming for them are answered first, and the requests for the missing model
# pile up meanwhile and ride one load together. "Serving" = a request in flight, or one that
# ended less than GROUPING_QUIET_S ago (a client's next request follows its answer within
# milliseconds; a load takes seconds). Without this rule a swap starts at the first request for
# the missing model, and with 3 models over 2 places about every other change of model is a
# load: the seeded trace of bench/residency_trace.py, simulated in
# tests/python/mentator/engine/test_swap_grouping.py, needs 17 loads in LRU order and 7 with it.
GROUPING_QUIET_S = 0.5
# The fairness bound's safety net: a swap waits at most this long for the residents to go quiet
# (traffic that never pauses), then goes on in LRU order; the waiting requests' own swap is
# still the next one, so none waits more than one swap beyond its turn.
GROUPING_BOUND_S = 10.0


class Serving(Protocol):
    @property
    def in_flight(self) -> int: ...

    @property
    def last_active_s(self) -> float: ...  # monotonic: its last request's start or end


def swap_may_start(residents: Sequence[Serving], now_s: float, waited_s: float) -> bool:
    """Grouping: whether a swap may evict now (False: the residents are serving; wait)."""
    if waited_s >= GROUPING_BOUND_S:
        return True
    return not any(r.in_flight > 0 or now_s - r.last_active_s < GROUPING_QUIET_S for r in residents)
