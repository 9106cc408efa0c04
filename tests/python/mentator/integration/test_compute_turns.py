"""On the CPU, resident models take turns computing (`scheduling.ComputeTurns`), against the real
service, engine and SmolLM2: a short request for one resident model waits until a long generation
of another resident model is done, instead of computing beside it (issue 21)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mentator_testing.service_process import RunningService, running_service

OTHER = "other-model.gguf"


@pytest.fixture(scope="module")
def two_models(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, str]]:
    with running_service(
        tmp_path_factory.mktemp("turns"), engine_dir=engine_dir, model=test_model, aliases=[OTHER]
    ) as service:
        yield service, test_model.name


def complete(http: httpx.Client, model: str, max_tokens: int) -> dict[str, Any]:
    answer = http.post(
        "/v1/completions",
        json={
            "model": model,
            "prompt": "1, 2, 3, 4, 5,",
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def in_flight(http: httpx.Client, model: str) -> int:
    for entry in http.get("/models/loaded").json()["loadedModels"]:
        if entry["name"] == model:
            return int(entry["inFlight"])
    return 0


def test_a_resident_model_waits_for_the_other_models_generation(
    two_models: tuple[RunningService, str],
) -> None:
    service, first = two_models
    with httpx.Client(base_url=service.base_url, timeout=300) as http:
        complete(http, first, 1)  # both resident, so no load is timed below
        complete(http, OTHER, 1)
        assert {entry["name"] for entry in http.get("/models/loaded").json()["loadedModels"]} == {
            first,
            OTHER,
        }

        ended: dict[str, float] = {}

        def long_generation() -> None:
            with httpx.Client(base_url=service.base_url, timeout=300) as own:
                body = complete(own, first, 160)
            ended["long"] = time.monotonic()
            ended["long_tokens"] = body["usage"]["completion_tokens"]

        worker = threading.Thread(target=long_generation)
        worker.start()
        deadline = time.monotonic() + 60
        while in_flight(http, first) == 0:
            assert time.monotonic() < deadline and worker.is_alive(), "the generation never ran"
            time.sleep(0.02)
        complete(http, OTHER, 2)
        ended["short"] = time.monotonic()
        worker.join(300)
    assert ended["long_tokens"] >= 100  # long enough that the short one could have overtaken it
    # Computing beside it, the 2-token answer would come long before the 160-token one.
    assert ended["short"] >= ended["long"] - 0.2
