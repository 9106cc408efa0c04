"""API keys (docs/security.md): every route but /health, /state/version and the UI's pages and
static files needs a configured key, sent as ``Authorization: Bearer`` or ``x-api-key``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.api.auth import key_accepted, needs_key
from mentator.config.loader import with_env_api_keys
from mentator.context import ServiceContext
from mentator.server import exposure_warning

KEY = "s3cret-key-1"
OTHER = "second-key"
PROMPT = {"model": "alpha.gguf", "message": {"user": "hi"}, "durationMsec": 10000}


@pytest.fixture
def keyed(services: ServiceContext) -> Iterator[TestClient]:
    services.settings = dataclasses.replace(services.settings, api_keys=(KEY, OTHER))
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client


PROTECTED = [
    ("POST", "/prompt", PROMPT),
    ("POST", "/embedding", {"model": "alpha.gguf", "text": "x"}),
    ("POST", "/v1/chat/completions", {"model": "alpha.gguf", "messages": []}),
    ("POST", "/v1/embeddings", {"model": "alpha.gguf", "input": "x"}),
    ("GET", "/v1/models", None),
    ("GET", "/state", None),
    ("GET", "/state/models", None),
    ("GET", "/log/core/byid?afterId=0&limit=5", None),
    ("GET", "/log/chat/byid?afterId=0&limit=5", None),
    ("POST", "/check/options", {"options": {}}),
    ("GET", "/metrics", None),
    ("GET", "/doc/json", None),
    ("GET", "/nope", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_without_a_key_is_401_in_the_path_s_envelope(
    keyed: TestClient, method: str, path: str, body: object
) -> None:
    response = keyed.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    if path.startswith("/v1/"):
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert error["type"] == "invalid_request_error"
        assert "API key required" in error["message"]
    else:
        assert response.json() == {
            "duration": {"promptMsec": 0, "queueMsec": 0},
            "error": response.json()["error"],
        }
        assert "Authorization: Bearer <key>" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_the_right_key_passes_by_either_header(
    keyed: TestClient, method: str, path: str, body: object
) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"x-api-key": OTHER}):
        response = keyed.request(method, path, json=body, headers=headers)
        assert response.status_code != 401, (path, headers, response.text)


def test_a_wrong_key_is_401_and_never_echoed_or_logged(
    keyed: TestClient, services: ServiceContext
) -> None:
    wrong = "wrong-key-value-42"
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"x-api-key": wrong}):
        response = keyed.post("/prompt", json=PROMPT, headers=headers)
        assert response.status_code == 401
        assert "not accepted" in response.json()["error"]
        assert wrong not in response.text
    ok = keyed.post("/prompt", json=PROMPT, headers={"Authorization": f"bearer {KEY}"})
    assert ok.status_code == 200, ok.text
    assert services.corelog is not None
    rows = services.corelog.after_id(0, 500)
    text = repr(rows)
    assert "401 for POST /prompt" in text
    assert wrong not in text
    assert KEY not in text


@pytest.mark.parametrize("path", ["/health", "/state/version"])
def test_health_and_version_stay_open(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code in (200, 503)
    assert keyed.get(path).status_code != 401


def test_ui_pages_and_static_files_are_not_guarded() -> None:
    for path in ("/", "/chat", "/stat", "/log/core", "/log/chat", "/ui/app.js", "/ui/x/y.css"):
        assert not needs_key("GET", path), path
    assert needs_key("POST", "/chat")
    assert needs_key("GET", "/log/core/bydate")
    assert needs_key("GET", "/uix")


def test_no_keys_means_no_check(client: TestClient) -> None:
    assert client.get("/state").status_code == 200


def test_key_accepted_compares_every_key() -> None:
    assert key_accepted("b", ("a", "b"))
    assert not key_accepted("c", ("a", "b"))
    assert not key_accepted("", ("a",))
    assert not key_accepted("é", ("e",))


def test_warning_at_start_when_listening_beyond_loopback_without_keys(
    services: ServiceContext,
) -> None:
    open_all = dataclasses.replace(services.settings, host="0.0.0.0", api_keys=())
    assert exposure_warning(open_all) is not None
    assert "MENTATOR_API_KEYS" in (exposure_warning(open_all) or "")
    assert exposure_warning(dataclasses.replace(open_all, api_keys=(KEY,))) is None
    for host in ("127.0.0.1", "localhost", "::1"):
        assert exposure_warning(dataclasses.replace(open_all, host=host)) is None


def test_keys_from_config_and_environment_are_both_accepted() -> None:
    assert with_env_api_keys(("a",), {"MENTATOR_API_KEYS": " b , ,a,c "}) == ("a", "b", "c")
    assert with_env_api_keys((), {}) == ()
