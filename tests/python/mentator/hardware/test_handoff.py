"""The entrypoint's decision reaches the service through MENTATOR_BACKEND_DECISION, unchanged;
anything unreadable there is ignored (the service then detects by itself)."""

from __future__ import annotations

import json

from mentator.backends.choice import BackendChoice, GpuDevice
from mentator.hardware.handoff import DECISION_ENV, decided_backend


def test_the_printed_decision_comes_back_whole() -> None:
    choice = BackendChoice(
        backend="cuda",
        reason="NVIDIA GPU (RTX), driver 580.65.06, CUDA 12 runtime",
        skipped={},
        devices=[GpuDevice("RTX", 24564, 1200)],
        cpu_variant="haswell",
        env={"GGML_BACKEND_PATH": "/e/cuda/libggml-cuda.so"},
    )
    text = json.dumps(choice.to_json())
    assert decided_backend({DECISION_ENV: text}) == choice


def test_no_or_unreadable_decision_is_none() -> None:
    assert decided_backend({}) is None
    assert decided_backend({DECISION_ENV: "not json"}) is None
    assert decided_backend({DECISION_ENV: "[1]"}) is None
    assert decided_backend({DECISION_ENV: '{"backend": "metal", "reason": "x"}'}) is None
    assert decided_backend({DECISION_ENV: '{"reason": "no backend"}'}) is None


def test_the_rendering_names_the_row_under_either_key_and_keeps_the_fallbacks() -> None:
    vulkan = BackendChoice(backend="vulkan", reason="Vulkan device", env={"A": "1"})
    cuda = BackendChoice(backend="cuda", reason="NVIDIA GPU", fallbacks=[vulkan])
    printed = cuda.to_json()
    assert printed["name"] == printed["backend"] == "cuda"
    assert decided_backend({DECISION_ENV: json.dumps(printed)}) == cuda
    # /state's object (the same rendering) read back, and a decision written by hand with
    # either key; two keys that disagree are not a decision.
    assert decided_backend({DECISION_ENV: '{"name": "rocm", "reason": "x"}'}) == BackendChoice(
        backend="rocm", reason="x"
    )
    assert decided_backend({DECISION_ENV: '{"backend": "rocm", "reason": "x"}'}) is not None
    assert (
        decided_backend({DECISION_ENV: '{"name": "rocm", "backend": "cuda", "reason": "x"}'})
        is None
    )
