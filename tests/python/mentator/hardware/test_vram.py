"""Live VRAM use for /state: measured on demand, briefly cached, None when nothing answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentator.backends import catalog
from mentator.backends.catalog import BACKENDS, BackendSpec
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


def test_a_new_catalog_row_is_measured_by_its_probe_with_no_other_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two hypothetical rows: a second CUDA major and a second HIP build, named unlike any other.
    rows = (
        BackendSpec("cuda13", "CUDA 13", "nvidia", "cuda13/libggml-cuda.so", "CUDA", cuda_major=13),
        BackendSpec("hip7", "HIP 7", "amd", "hip7/libggml-hip.so", "ROCm"),
        *BACKENDS,
    )
    monkeypatch.setattr(catalog, "BACKENDS", rows)
    monkeypatch.setattr(catalog, "BY_NAME", {spec.name: spec for spec in rows})
    value = tmp_path / "used"
    value.write_text("4096\n")
    env = {"MENTATOR_NVIDIA_SMI": str(_fake_nvidia_smi(tmp_path, value))}
    counter = tmp_path / "class" / "drm" / "card0" / "device" / "mem_info_vram_used"
    counter.parent.mkdir(parents=True)
    counter.write_text(str(1024 * 1024 * 1024))
    assert used_vram_mb("cuda13", env, sys_root=tmp_path) == 4096
    assert used_vram_mb("hip7", env, sys_root=tmp_path) == 1024
    assert used_vram_mb("metal", env, sys_root=tmp_path) is None  # not a row: nothing to ask
