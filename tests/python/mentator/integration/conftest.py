from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mentator_testing.service_process import RunningService, running_service


@pytest.fixture(scope="module")
def service(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    with running_service(
        tmp_path_factory.mktemp("service"), engine_dir=engine_dir, model=test_model
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=180) as http:
        yield http


@pytest.fixture(scope="module")
def model_name(test_model: Path) -> str:
    return test_model.name
