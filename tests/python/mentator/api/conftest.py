"""Fixtures of the HTTP-layer tests: a real ServiceContext with a fake engine manager, so every
route can be driven without llama-server (the real engine is exercised by the integration
tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.settings import Settings
from mentator.context import ServiceContext
from mentator_testing.fake_engine import (
    FakeEngine,
    LogReader,
    ServicesFactory,
    build_settings,
    build_test_services,
    read_chat_log,
    read_core_log,
)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return build_settings(tmp_path)


@pytest.fixture
def services(settings: Settings, engine: FakeEngine) -> Iterator[ServiceContext]:
    services = build_test_services(settings, engine)
    yield services
    if services.database is not None:
        services.database.close()


@pytest.fixture
def client(services: ServiceContext) -> Iterator[TestClient]:
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[ServicesFactory]:
    """``make_services(engine_or_None, **settings_overrides)`` in a fresh folder each call."""
    made: list[ServiceContext] = []

    def factory(engine: FakeEngine | None, **overrides: Any) -> ServiceContext:
        folder = tmp_path / f"services-{len(made)}"
        services = build_test_services(build_settings(folder, **overrides), engine)
        made.append(services)
        return services

    yield factory
    for services in made:
        if services.database is not None:
            services.database.close()


@pytest.fixture
def core_log() -> LogReader:
    return read_core_log


@pytest.fixture
def chat_log() -> LogReader:
    return read_chat_log
