"""The probes' parsers and their handling of misbehaving tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mentator.hardware.probes import (
    ProbeEnv,
    gfx_name_from_override,
    gfx_name_from_target_version,
    parse_cpu_variant,
    parse_device_list,
    probe_amd,
    probe_nvidia,
    run_tool,
)


@pytest.mark.parametrize(
    ("value", "name"),
    [(90010, "gfx90a"), (100300, "gfx1030"), (110000, "gfx1100"), (90012, "gfx90c"), (0, None)],
)
def test_gfx_target_version_names(value: int, name: str | None) -> None:
    assert gfx_name_from_target_version(value) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [("10.3.0", "gfx1030"), ("9.0.10", "gfx90a"), ("11.0.0", "gfx1100"), ("x", None)],
)
def test_hsa_override_names(text: str, name: str | None) -> None:
    assert gfx_name_from_override(text) == name


def test_device_list_parsing_keeps_gpu_lines_only() -> None:
    out = (
        "Available devices:\n"
        "  CUDA0: NVIDIA GeForce RTX 3090 (24135 MiB, 23884 MiB free)\n"
        "  CUDA1: NVIDIA A100-SXM4-80GB (81037 MiB, 80000 MiB free)\n"
        "some other line\n"
    )
    devices = parse_device_list(out)
    assert [(d.id, d.description, d.total_mb, d.free_mb) for d in devices] == [
        ("CUDA0", "NVIDIA GeForce RTX 3090", 24135, 23884),
        ("CUDA1", "NVIDIA A100-SXM4-80GB", 81037, 80000),
    ]
    assert devices[0].as_gpu().used_mb == 251
    assert parse_device_list("Available devices:\n  (none)\n") == []


def test_cpu_variant_from_the_registry_log_line() -> None:
    log = "load_backend: loaded CPU backend from /opt/engine/libggml-cpu-skylakex.so\n"
    assert parse_cpu_variant(log) == "skylakex"
    assert parse_cpu_variant("load_backend: loaded CPU backend from ./libggml-cpu.so") == "cpu"
    assert parse_cpu_variant("nothing here") is None


def test_run_tool_reports_missing_failing_and_ok(tmp_path: Path) -> None:
    missing = run_tool([str(tmp_path / "nope")], timeout_s=5)
    assert missing.problem == "nope not found"
    failing = run_tool(
        [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], timeout_s=5
    )
    assert failing.returncode == 3 and failing.problem is not None and "boom" in failing.problem
    ok = run_tool([sys.executable, "-c", "print('hi')"], timeout_s=5)
    assert ok.ok and ok.stdout.strip() == "hi"


def test_nvidia_probe_reads_every_gpu(machine: Any) -> None:
    machine.nvidia_smi(
        'echo "NVIDIA A100-SXM4-80GB, 81920, 10, 560.35.03"\n'
        'echo "NVIDIA A100-SXM4-80GB, 81920, 20000, 560.35.03"\n'
    )
    probe = probe_nvidia(machine.env())
    assert probe.problem is None
    assert probe.driver_version == "560.35.03"
    assert [(d.total_mb, d.used_mb) for d in probe.devices] == [(81920, 10), (81920, 20000)]


def test_nvidia_probe_with_no_rows(machine: Any) -> None:
    machine.nvidia_smi("exit 0\n")
    probe = probe_nvidia(machine.env())
    assert probe.devices == [] and probe.problem is not None
    assert "lists no GPU" in probe.problem


def test_amd_probe_without_kfd(machine: Any) -> None:
    probe = probe_amd(machine.env())
    assert probe.problem is not None and "--device /dev/kfd" in probe.problem


def test_amd_probe_kfd_but_no_target_and_no_rocminfo(machine: Any) -> None:
    machine.amd_gpu(None)
    probe = probe_amd(machine.env())
    assert probe.problem is not None
    assert "no AMD GPU gfx target" in probe.problem and "rocminfo not found" in probe.problem


def test_probe_env_from_environ_overrides() -> None:
    env = ProbeEnv.from_environ(
        {
            "MENTATOR_ENGINE_DIR": "/opt/engine",
            "MENTATOR_NVIDIA_SMI": "/fake/nvidia-smi",
            "MENTATOR_DEV_ROOT": "/fake/dev",
            "MENTATOR_PROBE_TIMEOUT_S": "2.5",
        }
    )
    assert env.engine_dir == Path("/opt/engine")
    assert env.nvidia_smi == "/fake/nvidia-smi"
    assert env.dev_root == Path("/fake/dev") and env.sys_root == Path("/sys")
    assert env.timeout_s == 2.5
