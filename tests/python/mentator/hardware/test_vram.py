"""Live VRAM use for /state: measured on demand, briefly cached, None when nothing answers."""

from __future__ import annotations

from pathlib import Path

from mentator.hardware.vram import VramMeter, used_vram_mb


def _fake_nvidia_smi(tmp_path: Path, value_file: Path) -> Path:
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\ncat "{value_file}"\n')
    tool.chmod(0o755)
    return tool


def test_cuda_is_measured_each_time_it_is_asked(tmp_path: Path) -> None:
    value = tmp_path / "used"
    tool = _fake_nvidia_smi(tmp_path, value)
    env = {"MENTATOR_NVIDIA_SMI": str(tool)}
    value.write_text("512\n")
    assert used_vram_mb("cuda", env) == 512
    value.write_text("2048\n")  # a model was loaded
    assert used_vram_mb("cuda", env) == 2048
    assert used_vram_mb("cpu", env) is None
    assert used_vram_mb("cuda", {"MENTATOR_NVIDIA_SMI": str(tmp_path / "missing")}) is None


def test_rocm_reads_the_amdgpu_counter(tmp_path: Path) -> None:
    counter = tmp_path / "class" / "drm" / "card1" / "device" / "mem_info_vram_used"
    counter.parent.mkdir(parents=True)
    counter.write_text(str(3 * 1024 * 1024 * 1024))
    assert used_vram_mb("rocm", {}, sys_root=tmp_path) == 3072
    assert used_vram_mb("vulkan", {}, sys_root=tmp_path) == 3072


def test_meter_caches_briefly_per_backend() -> None:
    now = [0.0]
    readings = iter([100, 200, 300])
    meter = VramMeter(lambda _backend: next(readings), cache_s=2.0, clock=lambda: now[0])
    assert meter.used_mb("cuda") == 100
    now[0] = 1.0
    assert meter.used_mb("cuda") == 100
    now[0] = 2.5
    assert meter.used_mb("cuda") == 200
