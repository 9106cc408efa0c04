"""The backend catalog is the one table of backends: its rows are complete and consistent, and a
new row (a second CUDA major) is picked up by detection with no other change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mentator.backends import catalog
from mentator.backends.catalog import BACKENDS, BackendSpec
from mentator.hardware.selection import select_backend
from mentator_testing.fake_machine import write_script


def test_rows_are_unique_ordered_and_end_with_the_cpu() -> None:
    names = [spec.name for spec in BACKENDS]
    assert names == ["cuda", "rocm", "vulkan", "cpu"]
    assert len(set(names)) == len(names)
    assert not BACKENDS[-1].is_gpu and BACKENDS[-1].probe == "none"


def test_every_gpu_row_names_its_library_device_prefix_and_probe() -> None:
    for spec in BACKENDS:
        if spec.is_gpu:
            assert spec.library and spec.library.endswith(".so"), spec
            assert spec.device_prefix, spec
            assert spec.probe in ("nvidia", "amd", "render-node"), spec


def test_cuda_12_runs_on_drivers_from_525() -> None:
    assert catalog.backend("cuda").driver_floor == 525
    with pytest.raises(KeyError, match="known: cuda, rocm, vulkan, cpu"):
        catalog.backend("metal")


def test_a_second_cuda_major_is_one_row(machine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda13 = BackendSpec(
        name="cuda13",
        title="CUDA 13",
        probe="nvidia",
        library="cuda13/libggml-cuda.so",
        device_prefix="CUDA",
        cuda_major=13,
    )
    rows = (cuda13, *BACKENDS)
    monkeypatch.setattr(catalog, "BACKENDS", rows)
    monkeypatch.setattr(catalog, "BY_NAME", {spec.name: spec for spec in rows})
    machine.engine_with("cuda", cudart_major=None)
    (machine.engine / "cuda13").mkdir()
    (machine.engine / "cuda13" / "libggml-cuda.so").write_bytes(b"")
    # A llama-server that lists the NVIDIA GPU under either CUDA backend.
    write_script(
        machine.engine / "llama-server",
        'echo "Available devices:"\n'
        'case "$GGML_BACKEND_PATH" in\n'
        '  *cuda*) echo "  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23000 MiB free)" ;;\n'
        "esac\n",
    )
    machine.nvidia_gpu(driver="550.54.14")
    choice = select_backend(machine.env())
    assert choice.backend == "cuda"
    assert choice.skipped["cuda13"].startswith(
        "NVIDIA driver 550.54.14 is too old for the bundled CUDA 13 runtime (needs driver 580"
    )
    machine.nvidia_gpu(driver="580.65.06")
    newer = select_backend(machine.env())
    assert newer.backend == "cuda13" and newer.skipped == {}
    assert newer.env["GGML_BACKEND_PATH"].endswith("/cuda13/libggml-cuda.so")
    assert replace(newer, env={}).to_json()["backend"] == "cuda13"
