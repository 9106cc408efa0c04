"""The Docker-missing paths, for real: a dead socket and a missing client program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mentator_build import docker_check
from mentator_build.cli import EXIT_FAILED, run


def _dead_socket(tmp_path: Path) -> str:
    return f"unix://{tmp_path / 'no-daemon.sock'}"


def test_dead_daemon_names_the_fixes(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": _dead_socket(tmp_path)}
    with pytest.raises(docker_check.DockerUnavailableError) as caught:
        docker_check.connect(env, timeout_s=3)
    message = str(caught.value)
    assert "does not answer" in message
    assert _dead_socket(tmp_path) in message
    assert "systemctl start docker" in message
    assert "usermod -aG docker" in message
    assert "DOCKER_HOST is set to" in message


def test_missing_client_says_install(tmp_path: Path) -> None:
    env = {"MENTATOR_DOCKER": str(tmp_path / "no-docker"), "PATH": str(tmp_path)}
    with pytest.raises(docker_check.DockerUnavailableError, match="Docker is not installed"):
        docker_check.connect(env)


def test_permission_problem_puts_the_group_fix_first() -> None:
    fixes = docker_check._fixes_for("Permission denied", {})
    assert "usermod -aG docker" in fixes[0]


def test_cli_exits_non_zero_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "DOCKER_HOST": _dead_socket(tmp_path)}
    assert run(["--no-build"], env) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "ERROR: The Docker daemon does not answer" in err
    assert "Fix:" in err


def test_cli_process_exit_code(tmp_path: Path) -> None:
    """The same through a real process: exit status 1 and the fix on stderr."""
    env = {
        **os.environ,
        "DOCKER_HOST": _dead_socket(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    result = subprocess.run(
        [sys.executable, "-c", "from mentator_build.cli import main; main()", "--no-build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "systemctl start docker" in result.stderr
