"""The import contracts of pyproject.toml ([tool.importlinter]) hold for the service's code, and
the check really fails when a module imports upwards (a violation planted in a copy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from importlinter.cli import lint_imports

import mentator

CONFIG = "pyproject.toml"
LINT = (
    "import sys; from importlinter.cli import lint_imports;"
    f" sys.exit(lint_imports(config_filename={CONFIG!r}, no_cache=True, no_logo=True))"
)


def test_the_import_contracts_hold() -> None:
    assert lint_imports(config_filename=CONFIG, no_cache=True, no_logo=True) == 0


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    package = Path(mentator.__file__).parent
    copy = tmp_path / "mentator"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "engine" / "process.py").open("a", encoding="utf-8") as planted:
        planted.write("\nfrom mentator.api.app import create_app  # noqa: E402, F401\n")
    run = subprocess.run(
        [sys.executable, "-c", LINT],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0, run.stdout
    assert "mentator.engine is not allowed to import mentator.api" in run.stdout
    assert "mentator.engine.process -> mentator.api.app" in run.stdout
