"""``/metrics``, ``/health`` and ``/doc``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
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


def test_openapi_documents_the_server_side_tools(client: TestClient) -> None:
    # toolServer runs the named tools (inference/tools_loop.py) and the answer lists the calls.
    prompt = client.get("/doc/json").json()["paths"]["/prompt"]["post"]
    request = prompt["requestBody"]["content"]["application/json"]["schema"]
    tool_server = request["properties"]["toolServer"]["description"]
    assert "ignored" not in tool_server and "not implemented" not in tool_server, tool_server
    assert "usedTools" in tool_server and "toolDir" in tool_server
    result = prompt["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    used = result["result"]["properties"]["usedTools"]
    assert used["type"] == "array" and used["items"] == {"type": "string"}


def test_fastapi_default_doc_routes_are_off(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    redirect = client.get("/docs", follow_redirects=False)
    assert redirect.status_code in (302, 307)
    assert redirect.headers["location"] == "/doc"


JSON_TYPE = {"content-type": "application/json"}
XML_TYPE = {"content-type": "application/xml"}

# The operations schemathesis found answering an undeclared 400 (issue 14), and what they answer.
UNDECLARED_BEFORE = [
    ("get", "/log/core/bydate", {"params": {"date": "nope"}}),
    ("get", "/log/chat/bydate", {"params": {"date": "nope"}}),
    ("get", "/log/core/byid", {"params": {"afterId": "x"}}),
    ("get", "/log/chat/byid", {"params": {"afterId": "x"}}),
    ("post", "/helper/prompt/fromstring", {"json": {"nope": 1}}),
    ("post", "/helper/prompt/tostring", {"json": {"nope": 1}}),
    ("post", "/v1/chat/completions", {"json": {"nope": 1}}),
    ("post", "/v1/embeddings", {"json": {"nope": 1}}),
]


@pytest.mark.parametrize(("method", "path", "request_args"), UNDECLARED_BEFORE)
def test_every_status_an_operation_answers_is_declared(
    client: TestClient, method: str, path: str, request_args: dict[str, Any]
) -> None:
    document = client.get("/doc/json").json()
    declared = document["paths"][path][method]["responses"]
    response = client.request(method.upper(), path, **request_args)
    assert response.status_code == 400, response.text
    assert "400" in declared
    if method == "post":
        assert {"413", "415"} <= set(declared)
        too_big = client.post(path, content=b"x" * (1024 * 1024 + 1), headers=JSON_TYPE)
        assert too_big.status_code == 413
        assert client.post(path, content=b"<a/>", headers=XML_TYPE).status_code == 415
    assert "401" not in declared  # no keys configured


def test_with_keys_the_guarded_operations_declare_401_and_the_schemes(
    services: ServiceContext,
) -> None:
    services.settings = dataclasses.replace(services.settings, api_keys=("k",))
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        document = client.get("/doc/json", headers={"x-api-key": "k"}).json()
    assert "401" in document["paths"]["/prompt"]["post"]["responses"]
    assert "401" not in document["paths"]["/health"]["get"]["responses"]
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}


PAGES = ["/", "/chat", "/stat", "/log/core", "/log/chat"]
# A value for each required query parameter of a GET operation: a new required parameter fails
# the test below (KeyError) until it is given a value here.
QUERY_SAMPLES = {"date": "20240101"}


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_documented_as_html(client: TestClient, path: str) -> None:
    """Issue 19: an OpenAPI fuzzer flagged the five pages, documented as application/json."""
    document = client.get("/doc/json").json()
    declared = document["paths"][path]["get"]["responses"]["200"]["content"]
    assert list(declared) == ["text/html"]
    assert _media_type(client.get(path).headers["content-type"]) == "text/html"


def test_every_get_operation_answers_the_media_type_it_declares(client: TestClient) -> None:
    document = client.get("/doc/json").json()
    wrong: list[str] = []
    checked: set[str] = set()
    for path, operations in document["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        assert "{" not in path, f"{path}: give its path parameters a value in this test"
        parameters = operation.get("parameters", [])
        query = {p["name"]: QUERY_SAMPLES[p["name"]] for p in parameters if p.get("required")}
        response = client.get(path, params=query)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        declared = set(operation["responses"]["200"].get("content", {}))
        answered = _media_type(response.headers["content-type"])
        if answered not in declared:
            wrong.append(f"GET {path} answers {answered}, documented {sorted(declared)}")
        checked.add(path)
    assert wrong == []
    assert {*PAGES, "/metrics", "/health", "/state", "/helper/example/options"} <= checked


STREAMED = [
    ("/v1/chat/completions", {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"model": "alpha", "prompt": "hi"}),
]


@pytest.mark.parametrize(("path", "body"), STREAMED)
def test_streamed_answers_are_documented_as_event_streams(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    document = client.get("/doc/json").json()
    declared = set(document["paths"][path]["post"]["responses"]["200"]["content"])
    whole = client.post(path, json=body)
    streamed = client.post(path, json={**body, "stream": True})
    assert (whole.status_code, streamed.status_code) == (200, 200), whole.text + streamed.text
    assert _media_type(whole.headers["content-type"]) in declared
    assert _media_type(streamed.headers["content-type"]) == "text/event-stream"
    assert "text/event-stream" in declared
