"""``/metrics``, ``/health`` and ``/doc``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.context import ServiceContext
from mentator.storage.database import StorageError
from mentator.version import VERSION

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine, ServicesFactory


def test_metrics_text(client: TestClient) -> None:
    client.post("/prompt", json={"model": "alpha", "message": {"user": "x"}, "durationMsec": 1000})
    client.get("/nope")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'mentator_http_requests_total{code="200",method="POST",route="/prompt"} 1.0' in text
    assert 'mentator_http_requests_total{code="404",method="GET",route="<unmatched>"} 1.0' in text
    assert 'mentator_prompt_duration_seconds_count{route="/prompt"} 1.0' in text
    assert 'mentator_queue_wait_seconds_count{route="/prompt"} 1.0' in text
    assert 'mentator_tokens_generated_total{route="/prompt"} 3.0' in text
    assert "mentator_queue_waiting 0.0" in text
    assert "mentator_queue_running 0.0" in text
    assert "mentator_models_available 2.0" in text
    assert 'mentator_model_loaded{backend="cpu",model="alpha.gguf"} 1.0' in text


def test_two_apps_do_not_share_counters(engine: FakeEngine, make_services: ServicesFactory) -> None:
    first = create_app(make_services(engine))
    second = create_app(make_services(engine))
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/state/version")
        assert 'route="/state/version"' not in two.get("/metrics").text


def test_health_ready(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["reasons"] == []
    assert body["version"] == VERSION
    assert body["backend"] == "cpu"


def test_health_starting(make_services: ServicesFactory) -> None:
    services = make_services(None)
    with TestClient(create_app(services)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "starting"
    assert response.json()["waitingFor"] == ["engine backend selection"]


def test_health_degraded(client: TestClient, services: ServiceContext, engine: FakeEngine) -> None:
    for path in services.settings.model_dir.iterdir():
        path.unlink()
    services.registry.rescan()
    engine.alive = False
    services.health.db_failed(str(StorageError("database error on save prompt: disk I/O error")), 1)
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert len(body["reasons"]) == 3
    assert body["reasons"][0].startswith("no models found")
    assert "exited" in body["reasons"][1]
    assert "disk I/O error" in body["reasons"][2]


def test_doc_page_uses_local_assets(client: TestClient) -> None:
    page = client.get("/doc")
    assert page.status_code == 200
    assert "/doc/static/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN
    bundle = client.get("/doc/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert len(bundle.content) > 100_000
    assert client.get("/doc/static/swagger-ui.css").status_code == 200


def test_openapi_document(client: TestClient) -> None:
    document = client.get("/doc/json").json()
    assert document["openapi"].startswith("3.0")
    assert document["info"]["title"] == "Mentator LLM Service"
    assert document["info"]["version"] == VERSION
    assert "DDL" not in document["info"]["description"]
    paths = document["paths"]
    for path in (
        "/prompt",
        "/embedding",
        "/check/gbnf",
        "/state",
        "/log/chat",
        "/v1/chat/completions",
        "/metrics",
        "/health",
    ):
        assert path in paths, path
    prompt_schema = paths["/prompt"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert prompt_schema["required"] == ["model", "message", "durationMsec"]
    assert "/doc" not in paths
    assert client.get("/openapi.json").json() == document
    assert yaml.safe_load(client.get("/doc/yaml").text) == document


def test_fastapi_default_doc_routes_are_off(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    redirect = client.get("/docs", follow_redirects=False)
    assert redirect.status_code in (302, 307)
    assert redirect.headers["location"] == "/doc"
