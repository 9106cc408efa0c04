"""`--detect-hardware` prints exactly one JSON line (docker-entrypoint.sh hands it on), and
``--env-flag`` reads it back for the entrypoint (which parses no JSON itself)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mentator.backends import catalog
from mentator.backends.canary import CACHE_FILE_NAME, CanaryReport, Correctness, TierResult, save
from mentator.backends.catalog import BACKENDS, BackendSpec
from mentator.backends.choice import BackendChoice
from mentator.cli import main as mentator_main
from mentator.hardware.cli import main
from mentator.hardware.handoff import DECISION_ENV


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
    data = machine.root / "data"
    argv = ["--engine-dir", str(machine.engine), "--explain", "--data-dir", str(data)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["backend"] == "cpu"
    lines = captured.err.splitlines()
    assert lines[0] == "Selected backend: cpu (no usable GPU, CPU variant haswell)"
    assert lines[1].startswith("  cuda skipped: NVIDIA GPU (NVIDIA GeForce RTX 4090) found")
    assert [line.split(" skipped:")[0].strip() for line in lines[1:4]] == ["cuda", "rocm", "vulkan"]
    assert lines[4].startswith("canary: not run yet (the service runs it at start")
    # The service's cached canary, every tier with its numbers and the choice:
    report = CanaryReport(
        fingerprint="f",
        tiers=[
            TierResult("vulkan", True, True, None, Correctness(1.0, 0.02, 8), 40.0, 5.9),
            TierResult("cpu", True, True, None, Correctness(1.0, 0.0, 8), 90.0, 13.1),
        ],
        chosen="cpu",
        reason="vulkan: correct, 5.9 t/s; cpu: 13.1 t/s → cpu, 2.2x faster than vulkan",
        seconds=9.5,
    )
    save(data / CACHE_FILE_NAME, report)
    assert main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[4:8] == [
        "canary (9.5 s):",
        "  vulkan: correct (top-1 8/8, mean |Δlogprob| 0.020), 5.9 t/s [probed, loaded]",
        "  cpu: 13.1 t/s [probed, loaded]",
        "  → cpu, 2.2x faster than vulkan",
    ]


def _env_flag(
    decision: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`python -m mentator --detect-hardware --env-flag` with ``decision`` in the environment."""
    if decision is None:
        monkeypatch.delenv(DECISION_ENV, raising=False)
    else:
        monkeypatch.setenv(DECISION_ENV, decision)
    code = mentator_main(["--detect-hardware", "--env-flag"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_env_flag_names_the_original_variable_of_the_decided_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, flag in (
        ("cuda", "LLAMA_CUDA"),
        ("rocm", "LLAMA_HIPBLAS"),
        ("vulkan", ""),
        ("cpu", ""),
    ):
        printed = json.dumps(BackendChoice(backend=name, reason="test").to_json())
        assert _env_flag(printed, monkeypatch, capsys) == (0, flag + "\n", ""), name
    # Read as JSON, not as text: the key order and spacing do not matter (a `sed` on the line
    # found nothing here), nor which of the two name keys a hand-written decision uses.
    reordered = '{ "reason": "by hand",\n  "devices": [], "backend" : "rocm" }'
    assert _env_flag(reordered, monkeypatch, capsys) == (0, "LLAMA_HIPBLAS\n", "")
    assert _env_flag('{"reason": "x", "name": "cuda"}', monkeypatch, capsys)[1] == "LLAMA_CUDA\n"


def test_env_flag_follows_a_new_catalog_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cuda13 = BackendSpec("cuda13", "CUDA 13", "nvidia", "cuda13/libggml-cuda.so", "CUDA", 13)
    rows = (cuda13, *BACKENDS)
    monkeypatch.setattr(catalog, "BACKENDS", rows)
    monkeypatch.setattr(catalog, "BY_NAME", {spec.name: spec for spec in rows})
    printed = json.dumps(BackendChoice(backend="cuda13", reason="test").to_json())
    assert _env_flag(printed, monkeypatch, capsys) == (0, "LLAMA_CUDA\n", "")


def test_env_flag_without_a_readable_decision_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for decision in (None, "not json", '{"backend": "metal", "reason": "x"}'):
        code, out, err = _env_flag(decision, monkeypatch, capsys)
        assert (code, out) == (1, ""), decision
        assert f"--env-flag needs a decision in ${DECISION_ENV}" in err
