"""The backend decision has one rendering (`BackendChoice.to_json`): `/state` shows it,
`--detect-hardware` prints it, `/health` names its ``name``, and it reads back whole."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from mentator.backends.choice import BackendChoice, GpuDevice
from mentator.context import ServiceContext
from mentator.hardware import cli as hardware_cli
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.vram import VramMeter

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine

VULKAN = BackendChoice(
    backend="vulkan",
    reason="Vulkan device found",
    devices=[GpuDevice("RTX 4090", 24564, None)],
    env={"GGML_BACKEND_PATH": "/e/vulkan/libggml-vulkan.so"},
)
CUDA = BackendChoice(
    backend="cuda",
    reason="NVIDIA GPU (RTX 4090), driver 580.65.06, CUDA 12 runtime",
    skipped={"cuda13": "no cuda13 library"},
    devices=[GpuDevice("RTX 4090", 24564, 512)],
    cpu_variant="haswell",
    env={"GGML_BACKEND_PATH": "/e/cuda/libggml-cuda.so", "LD_LIBRARY_PATH": "/e/cuda"},
    fallbacks=[VULKAN],
)


def test_state_health_and_detect_hardware_show_the_same_rendering(
    client: TestClient,
    services: ServiceContext,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine.choice = CUDA
    services.vram = VramMeter(lambda _backend: None)  # no nvidia-smi here
    monkeypatch.setattr(hardware_cli, "select_backend", lambda _env: CUDA)
    monkeypatch.setattr(ProbeEnv, "from_environ", lambda *_args, **_kw: None)
    assert hardware_cli.main([]) == 0
    printed = json.loads(capsys.readouterr().out)
    state = client.get("/state").json()["backend"]
    health = client.get("/health").json()
    assert state == printed == json.loads(json.dumps(CUDA.to_json()))
    # /health is open without an API key (docs/security.md: it holds no data), so it carries
    # only the rendering's name, not the devices, paths and reasons.
    assert health["backend"] == printed["name"] == "cuda"
    # The keys the stat page reads (api/ui/stat.js) and the handoff's round trip.
    assert {"name", "cpuVariant", "reason", "skipped", "devices"} <= set(state)
    assert state["fallbacks"][0]["name"] == "vulkan"
    assert BackendChoice.from_json(state) == CUDA


def test_state_measures_vram_with_the_services_own_meter(
    client: TestClient, services: ServiceContext, engine: FakeEngine
) -> None:
    engine.choice = CUDA
    asked: list[str] = []

    def measure(backend: str) -> int:
        asked.append(backend)
        return 3000

    services.vram = VramMeter(measure, cache_s=0.0)
    assert client.get("/state").json()["gpuInfo"]["usedVramMb"] == 3000
    assert asked == ["cuda"]
