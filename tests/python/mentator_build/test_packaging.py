from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mentator_build.packaging import (
    Flavour,
    PackagingError,
    expected_tags,
    human_size,
    pants_environment,
    read_version,
    repo_root_from,
)


def _prelude(tmp_path: Path, text: str) -> Path:
    (tmp_path / "build-support").mkdir()
    (tmp_path / "build-support" / "prelude.py").write_text(text)
    return tmp_path


def test_version_is_parsed_not_executed(tmp_path: Path) -> None:
    root = _prelude(tmp_path, 'import sys; sys.exit(3)\nMENTATOR_VERSION = "9.8.7"\n')
    assert read_version(root) == "9.8.7"


def test_missing_version_is_a_clear_error(tmp_path: Path) -> None:
    root = _prelude(tmp_path, "OTHER = 1\n")
    with pytest.raises(PackagingError, match=re.escape('MENTATOR_VERSION = "X.Y.Z"')):
        read_version(root)


def test_versions_agree(tmp_path: Path) -> None:
    """The prelude's version is the one Pants hands to the tests (same single source)."""
    version = os.environ.get("MENTATOR_VERSION", "1.2.0")
    root = _prelude(tmp_path, f'MENTATOR_VERSION = "{version}"\n')
    assert read_version(root) == version


def test_tags_and_targets() -> None:
    assert Flavour.CPU.target == "docker:mentator-cpu"
    assert expected_tags(Flavour.UNIVERSAL, "1.2.0") == [
        "mentator-llm-service:latest",
        "mentator-llm-service:1.2.0",
    ]


def test_nested_pants_runs_without_waiting_for_pantsd() -> None:
    env = pants_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "PANTS_CONCURRENT": "true"}


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1_500_000) == "1.5 MB"
    assert human_size(2_345_000_000) == "2.3 GB"


def test_repo_root_is_found_upwards(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert repo_root_from(nested) == tmp_path
