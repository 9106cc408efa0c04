"""Command line: modes, exit codes, messages, delegation to the service and hardware CLI."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from mentator.cli import main
from mentator.config.settings import Settings
from mentator.config.template import TEMPLATE_FILE_NAME
from mentator.version import VERSION


@pytest.fixture
def fake_service(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stands in for mentator.server (another module's job) and records what it was given."""
    started: list[Settings] = []
    module = types.ModuleType("mentator.server")

    def run_service(settings: Settings) -> int:
        started.append(settings)
        return 7

    module.run_service = run_service  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mentator.server", module)
    return started


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mentator-llm-service {VERSION}\n"


def test_help_lists_all_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--conf-gen", "--conf-use", "--conf-docker", "--detect-hardware", "--version"):
        assert flag in out


def test_no_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "give one of --conf-gen DIR, --conf-use FILE or --conf-docker FILE" in err
    assert "--conf-docker" in err


def test_no_argument_prints_the_originals_help_first(capsys: pytest.CaptureFixture[str]) -> None:
    # The original printed "mentator-llm-service, version <ver>", a description and the usage.
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mentator-llm-service, version {VERSION}\n"), err
    assert "Local LLM behind an HTTP API" in err
    for flag in ("--conf-gen DIR", "--conf-use FILE", "--conf-docker FILE"):
        assert flag in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--conf-use"],
            "ERROR: Please provide a path to the config file."
            " Example: --conf-use /path/to/config.jsonc",
        ),
        (
            ["--conf-gen"],
            "ERROR: Please provide a directory path to generate the config template."
            " Example: --conf-gen /path/to/dir",
        ),
        (
            ["--conf-docker"],
            "ERROR: Please provide a path to the config file. Example: --conf-docker"
            " /opt/mentator-llm-service/data/mentator-llm-service.conf.jsonc",
        ),
        # A flag followed by another flag has no value either (the original's minimist too).
        (
            ["--conf-use", "--conf-gen", "x"],
            "ERROR: Please provide a path to the config file."
            " Example: --conf-use /path/to/config.jsonc",
        ),
    ],
)
def test_flag_without_its_value_gets_the_originals_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message + "\n")


def test_two_modes_or_missing_value_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--conf-gen", str(tmp_path), "--conf-use", "x"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["--conf-use"]) == 2
    assert "expected one argument" in capsys.readouterr().err


def test_conf_gen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a" / "b"
    assert main(["--conf-gen", str(target)]) == 0
    assert capsys.readouterr().out == f'config create "{target / TEMPLATE_FILE_NAME}"\n'
    assert (target / TEMPLATE_FILE_NAME).is_file()


def test_conf_gen_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert main(["--conf-gen", str(blocker / "d")]) == 1
    assert "cannot write the template" in capsys.readouterr().err


def test_conf_use_bad_config_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_service: list[Settings]
) -> None:
    path = tmp_path / "c.jsonc"
    path.write_text('{"port": "x"}')
    assert main(["--conf-use", str(path)]) == 1
    err = capsys.readouterr().err
    assert f'ERROR: config "{path}": key "modelDir": missing' in err
    assert 'key "port": expected an integer 1..65535, got "x"' in err
    assert fake_service == []


def test_conf_use_starts_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_service: list[Settings]
) -> None:
    main(["--conf-gen", str(tmp_path)])
    path = tmp_path / TEMPLATE_FILE_NAME
    path.write_text(path.read_text().replace('"port": 19777', '"port": 19999, "surprise": 1'))
    assert main(["--conf-use", str(path)]) == 7
    assert fake_service[0].port == 19999 and fake_service[0].mode == "use"
    assert 'WARNING: config "' in capsys.readouterr().err


def test_conf_docker_starts_the_service(tmp_path: Path, fake_service: list[Settings]) -> None:
    path = tmp_path / "mentator-llm-service.conf.jsonc"
    assert main(["--conf-docker", str(path)]) == 7
    assert path.is_file()
    settings = fake_service[0]
    assert settings.mode == "docker" and settings.port == 19777
    assert settings.db_file == Path("/opt/mentator-llm-service/data/mentator-llm-service.db")


def test_conf_docker_bad_config_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_service: list[Settings]
) -> None:
    path = tmp_path / "c.jsonc"
    path.write_text('{"log": {"level": "info"}}')
    assert main(["--conf-docker", str(path)]) == 1
    assert (
        'key "log.level": expected "error" or "debug" or "trace", got "info"'
        in capsys.readouterr().err
    )
    assert fake_service == []


def test_missing_service_module_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mentator.server", None)
    assert main(["--conf-docker", str(tmp_path / "c.jsonc")]) == 1
    assert "the service cannot start" in capsys.readouterr().err


def test_detect_hardware_is_delegated_with_its_own_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []
    module = types.ModuleType("mentator.hardware.cli")

    def fake_main(argv: Sequence[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 3

    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mentator.hardware.cli", module)
    assert main(["--detect-hardware", "--engine-dir", "/e"]) == 3
    assert calls == [["--engine-dir", "/e"]]


def test_detect_hardware_missing_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mentator.hardware.cli", None)
    assert main(["--detect-hardware"]) == 1
    assert "hardware detection is not available" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path: Path) -> None:
    import os
    import subprocess

    env_path = os.pathsep.join(entry for entry in sys.path if entry)
    result = subprocess.run(
        [sys.executable, "-m", "mentator", "--conf-gen", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('config create "')
