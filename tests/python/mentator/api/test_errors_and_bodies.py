"""Error envelopes, status codes and body handling of the original (reference §2.1)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from mentator.context import ServiceContext

if TYPE_CHECKING:
    from mentator_testing.fake_engine import LogReader

ZERO = {"promptMsec": 0, "queueMsec": 0}
GOOD = {"model": "alpha.gguf", "message": {"user": "hi"}, "durationMsec": 10000}


def envelope(message: str) -> dict[str, object]:
    return {"duration": ZERO, "error": message}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": {"user": "x"}, "durationMsec": 1}, "body must have required property 'model'"),
        (
            {"model": "m", "message": {}, "durationMsec": 1},
            "body/message must have required property 'user'",
        ),
        ({**GOOD, "contextSize": 100}, "body/contextSize must be >= 512"),
        ({**GOOD, "contextSize": 1024.5}, "body/contextSize must be integer"),
        ({**GOOD, "contextSize": "abc"}, "body/contextSize must be integer"),
        ({**GOOD, "gpulayer": -1}, "body/gpulayer must be >= 0"),
        (
            {**GOOD, "format": {"useGrammar": True}},
            "body/format must have required property 'jsonSchema'",
        ),
        ({**GOOD, "options": {"temperature": 5}}, "body/options/temperature must be <= 2"),
        ({**GOOD, "options": {"topK": 3.5}}, "body/options/topK must be integer"),
        ({**GOOD, "message": "text"}, "body/message must be object"),
        ({**GOOD, "durationMsec": {}}, "body/durationMsec must be number"),
    ],
)
def test_prompt_validation_messages(
    client: TestClient, body: dict[str, object], message: str
) -> None:
    response = client.post("/prompt", json=body)
    assert response.status_code == 400
    assert response.json() == envelope(message)


def test_required_properties_are_reported_in_dto_order(client: TestClient) -> None:
    # `required` runs before `properties`: a missing model wins over a bad contextSize.
    response = client.post("/prompt", json={"contextSize": 1})
    assert response.json()["error"] == "body must have required property 'model'"


def test_validation_error_is_logged_like_the_global_handler(
    client: TestClient, services: ServiceContext, core_log: LogReader
) -> None:
    client.post("/prompt", json={})
    entry = core_log(services)[-1]
    assert entry["pipe"] == "API"
    assert entry["kind"] == "error"
    assert entry["message"] == "Error handler for POST /prompt"
    assert json.loads(str(entry["extra"])) == {
        "message": "body must have required property 'model'",
        "statusCode": 400,
    }


def test_invalid_json(client: TestClient) -> None:
    response = client.post(
        "/prompt", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == envelope(
        "Body is not valid JSON but content-type is set to 'application/json'"
    )


def test_nan_is_not_json(client: TestClient) -> None:
    response = client.post(
        "/check/jsonresponse",
        content=b'{"schema": NaN}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400


def test_empty_json_body(client: TestClient) -> None:
    response = client.post(
        "/prompt", content=b"", headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 400
    assert response.json() == envelope(
        "Body cannot be empty when content-type is set to 'application/json'"
    )


def test_text_plain_body_must_be_object(client: TestClient) -> None:
    response = client.post("/prompt", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert response.json() == envelope("body must be object")


def test_no_body_no_content_type_must_be_object(client: TestClient) -> None:
    response = client.post("/prompt")
    assert response.status_code == 400
    assert response.json() == envelope("body must be object")


@pytest.mark.parametrize(
    "content_type", ["application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_other_content_types_are_415(client: TestClient, content_type: str) -> None:
    response = client.post("/prompt", content=b"a=1", headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json() == envelope("Unsupported Media Type")


def test_body_over_one_mebibyte_is_413(client: TestClient) -> None:
    big = json.dumps({"content": "x" * (1024 * 1024)}).encode()
    response = client.post(
        "/helper/prompt/fromstring", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == envelope("Request body is too large")


def test_body_just_under_the_limit_is_read(client: TestClient) -> None:
    payload = {"content": "y" * (1024 * 1024 - 100)}
    response = client.post("/helper/prompt/fromstring", json=payload)
    assert response.status_code == 200
    assert response.json() == []


def test_prototype_poisoning_is_refused(client: TestClient) -> None:
    response = client.post(
        "/check/jsonresponse",
        content=b'{"schema": {"__proto__": {"x": 1}}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == envelope("Object contains forbidden prototype property")


def test_unknown_route_uses_the_envelope(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == envelope("Route GET:/nope not found")


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = client.delete("/prompt")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == envelope("Method DELETE not allowed on /prompt (allowed: POST)")


def test_querystring_required(client: TestClient) -> None:
    response = client.get("/log/core/bydate")
    assert response.status_code == 400
    assert response.json() == envelope("querystring must have required property 'date'")


def test_unexpected_exception_is_a_500_envelope(
    client: TestClient,
    services: ServiceContext,
    monkeypatch: pytest.MonkeyPatch,
    core_log: LogReader,
) -> None:
    def explode() -> list[object]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.registry, "models", explode)
    response = client.get("/state/models")
    assert response.status_code == 500
    assert response.json() == envelope("RuntimeError: disk on fire")
    assert any(
        entry["message"] == "unexpected error on GET /state/models" for entry in core_log(services)
    )


@pytest.mark.parametrize("path", ["/prompt", "/v1/chat/completions", "/check/gbnf"])
@pytest.mark.parametrize("levels", [300, 100_000])
def test_deeply_nested_json_is_a_clear_400_not_a_recursion_error(
    client: TestClient, path: str, levels: int
) -> None:
    # 100 000 levels overflow Python's parser; 300 parse but would overflow the recursive checks.
    raw = "[" * levels + "]" * levels
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    text = json.dumps(response.json())
    assert "nested too deeply" in text
    assert "256 levels" in text


def test_nesting_within_the_limit_is_accepted_by_the_body_reader(client: TestClient) -> None:
    nested: object = {"type": "string"}
    for _ in range(20):
        nested = {"type": "object", "properties": {"a": nested}}
    response = client.post("/check/gbnf", json={"schema": nested})
    assert response.status_code == 200
    assert response.json()["error"] == ""
