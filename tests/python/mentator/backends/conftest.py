"""The fake machine (`mentator_testing.fake_machine`) of these tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentator_testing.fake_machine import FakeMachine


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)
