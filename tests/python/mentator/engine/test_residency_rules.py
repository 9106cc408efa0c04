"""The residency rules (`engine.residency`) without an engine: the GGUF estimate, the budget
checks, the LRU choice, the keep-alive forms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mentator.engine.residency import (
    OVERHEAD_MB,
    Budget,
    MemoryNeed,
    estimate_need,
    least_recently_used,
    refusal,
    shortfall,
)
from mentator.inference.requests import parse_keep_alive


@dataclass(frozen=True)
class Sized:
    size_kb: int = 96_056  # SmolLM2-135M Q4_1
    layer_count: int | None = 30
    context_length: int | None = 8192
    kv_bytes_per_token: int | None = 23_040


def test_the_estimate_is_weights_plus_kv_for_the_context() -> None:
    need = estimate_need(Sized(), None, 1024, parallel=2, gpus=0)
    assert need.weights_mb == 94
    assert need.context_tokens == 2048  # contextSize per slot, times the slots
    assert need.kv_mb == 45  # 23,040 bytes a token
    assert need.host_mb == 94 + 45 + OVERHEAD_MB and need.vram_mb == 0
    # No contextSize: the model's trained context.
    assert estimate_need(Sized(), None, None, parallel=2, gpus=0).context_tokens == 8192


def test_on_gpus_the_offloaded_share_is_split_over_the_devices() -> None:
    whole = estimate_need(Sized(), None, 1024, parallel=1, gpus=2)
    assert whole.vram_mb == (94 + 23 + 1) // 2 and whole.host_mb == OVERHEAD_MB
    half = estimate_need(Sized(), 15, 1024, parallel=1, gpus=1)  # 15 of 31 layers
    assert 0 < half.vram_mb < whole.vram_mb * 2
    assert half.host_mb > OVERHEAD_MB


def need(host_mb: int, vram_mb: int = 0) -> MemoryNeed:
    return MemoryNeed(host_mb, 0, 0, host_mb, vram_mb)


def test_shortfall_names_what_stops_a_load() -> None:
    budget = Budget(max_loaded=2, host_mb=500, vram_mb=None)
    assert shortfall(need(200), [need(200)], budget, None) is None
    assert shortfall(need(200), [need(100), need(100)], budget, None) == "capacity"
    assert shortfall(need(200), [need(400)], budget, None) == "memory"
    assert shortfall(need(200), [], budget, 150) == "memory"  # measured free
    vram = Budget(max_loaded=3, host_mb=None, vram_mb=1000)
    assert shortfall(need(10, 600), [need(10, 600)], vram, None) == "memory"


def test_refusal_of_a_model_that_never_fits() -> None:
    assert refusal(need(200), Budget(3, 150, None), None) == (
        "needs 200 MB of RAM, more than memoryBudgetMb 150 MB"
    )
    assert refusal(need(200), Budget(3, None, None), 100) == (
        "needs 200 MB of RAM, only 100 MB are free"
    )
    assert refusal(need(200), Budget(3, None, None), None) is None


@dataclass
class Entry:
    use_order: int
    pinned: bool = False
    in_flight: int = 0


def test_lru_skips_pinned_and_busy_models() -> None:
    oldest, pinned, busy, newest = Entry(1, pinned=True), Entry(2, in_flight=1), Entry(3), Entry(4)
    assert least_recently_used([newest, pinned, busy, oldest]) is busy
    assert least_recently_used([oldest, pinned]) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300.0), (0, 0.0), (-5, -1.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0),
     ("2.5", 2.5), ("-1", -1.0)],
)  # fmt: skip
def test_keep_alive_forms(value: object, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "5x", "m5", True, [1], "5m3"])
def test_bad_keep_alive_forms(value: object) -> None:
    with pytest.raises(ValueError, match="keepAlive must be seconds"):
        parse_keep_alive(value)
