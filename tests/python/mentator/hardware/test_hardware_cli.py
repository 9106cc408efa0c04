"""`--detect-hardware` prints exactly one JSON line (docker-entrypoint.sh parses it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mentator.hardware.cli import main


def test_prints_one_json_line(
    machine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.engine_with("cuda")
    machine.llama_server()
    machine.nvidia_gpu()
    env = machine.env()
    monkeypatch.setenv("MENTATOR_NVIDIA_SMI", env.nvidia_smi)
    monkeypatch.setenv("MENTATOR_DEV_ROOT", str(env.dev_root))
    monkeypatch.setenv("MENTATOR_SYS_ROOT", str(env.sys_root))
    assert main(["--engine-dir", str(machine.engine)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["backend"] == "cuda"
    assert data["devices"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert data["env"]["GGML_BACKEND_PATH"].endswith("cuda/libggml-cuda.so")
    assert data["cpuVariant"] == "haswell"


def test_engine_dir_from_environment(
    machine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.engine_with()
    machine.llama_server()
    env = machine.env()
    monkeypatch.setenv("MENTATOR_ENGINE_DIR", str(machine.engine))
    monkeypatch.setenv("MENTATOR_NVIDIA_SMI", env.nvidia_smi)
    monkeypatch.setenv("MENTATOR_DEV_ROOT", str(env.dev_root))
    monkeypatch.setenv("MENTATOR_SYS_ROOT", str(env.sys_root))
    assert main([]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "cpu"
    assert set(data["skipped"]) == {"cuda", "rocm", "vulkan"}


def test_explain_writes_the_decision_in_words_to_stderr(
    machine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.engine_with()
    machine.llama_server()
    machine.nvidia_gpu()
    env = machine.env()
    monkeypatch.setenv("MENTATOR_NVIDIA_SMI", env.nvidia_smi)
    monkeypatch.setenv("MENTATOR_DEV_ROOT", str(env.dev_root))
    monkeypatch.setenv("MENTATOR_SYS_ROOT", str(env.sys_root))
    assert main(["--engine-dir", str(machine.engine), "--explain"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["backend"] == "cpu"
    lines = captured.err.splitlines()
    assert lines[0] == "Selected backend: cpu (no usable GPU, CPU variant haswell)"
    assert lines[1].startswith("  cuda skipped: NVIDIA GPU (NVIDIA GeForce RTX 4090) found")
    assert [line.split(" skipped:")[0].strip() for line in lines[1:]] == ["cuda", "rocm", "vulkan"]
