"""Fixtures of the use-case tests (`mentator_testing.use_case_rig`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mentator_testing.use_case_rig import Rig, use_case_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with use_case_rig(tmp_path) as made:
        yield made
