"""``/check/*`` and ``/helper/*`` (reference §2.7)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.options import CORE_DEFAULTS, JSON_DEFAULTS
from mentator_testing.fake_engine import ServicesFactory
from mentator_testing.spec_examples import PROMPT_FILE


def test_check_jsonresponse_ok_and_bad(client: TestClient) -> None:
    assert client.post("/check/jsonresponse", json={"schema": {"type": "string"}}).json() == {
        "error": ""
    }
    bad = client.post("/check/jsonresponse", json={"schema": {"type": "object1"}})
    assert bad.status_code == 200
    assert bad.json()["error"].startswith("JSON Schema validation failed: ")
    null = client.post("/check/jsonresponse", json={"schema": None}).json()["error"]
    assert null.startswith("JSON Schema validation failed: ")
    text = client.post("/check/jsonresponse", json={"schema": "str"}).json()["error"]
    assert text == "JSON Schema validation failed: schema must be object or boolean"


def test_check_jsonresponse_requires_schema(client: TestClient) -> None:
    response = client.post("/check/jsonresponse", json={})
    assert response.status_code == 400
    assert response.json()["error"] == "body must have required property 'schema'"


def test_check_gbnf_accepts_what_prompt_accepts(client: TestClient) -> None:
    # anyOf and objects without properties: the original's narrow checker refused these.
    schema = {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "integer"}}]}
    answer = client.post("/check/gbnf", json={"schema": schema}).json()
    assert answer["error"] == ""
    assert "root" in answer["grammar"]


def test_check_gbnf_reports_conversion_failures(client: TestClient) -> None:
    answer = client.post(
        "/check/gbnf", json={"schema": {"type": "string", "pattern": "(?<=x)y"}}
    ).json()
    assert answer["error"].startswith("GBNF conversion failed: ")
    assert "grammar" not in answer
    invalid = client.post("/check/gbnf", json={"schema": {"type": 5}}).json()
    assert invalid["error"].startswith("JSON Schema validation failed: ")


def test_check_options_not_an_object(client: TestClient) -> None:
    for value in (None, [1], "x", 3):
        answer = client.post("/check/options", json={"options": value}).json()
        assert answer == {"error": "Options must be a JSON object", "options": dict(JSON_DEFAULTS)}


def test_check_options_given_over_json_defaults_and_problems_reported(client: TestClient) -> None:
    answer = client.post(
        "/check/options", json={"options": {"temperature": 0.5, "topK": 3.5, "maxTokens": "64"}}
    ).json()
    assert answer["error"] == "options/topK must be integer"
    assert answer["options"] == {**JSON_DEFAULTS, "temperature": 0.5, "maxTokens": 64}
    assert list(answer["options"]) == list(JSON_DEFAULTS)


def test_check_options_empty_object_is_the_json_defaults(client: TestClient) -> None:
    assert client.post("/check/options", json={"options": {}}).json() == {
        "error": "",
        "options": dict(JSON_DEFAULTS),
    }


def test_check_options_missing(client: TestClient) -> None:
    response = client.post("/check/options", json={})
    assert response.status_code == 400
    assert response.json() == {
        "duration": {"promptMsec": 0, "queueMsec": 0},
        "error": "body must have required property 'options'",
    }


def test_example_jsonresponse(client: TestClient) -> None:
    schema_text = client.get("/helper/example/jsonresponse").json()["schema"]
    assert schema_text.startswith('{\n  "type": "array",\n  "items": {\n    "type": "object",')
    schema = json.loads(schema_text)
    assert schema["items"]["required"] == ["name", "age"]
    assert schema["items"]["additionalProperties"] is False
    assert schema["items"]["properties"] == {"name": {"type": "string"}, "age": {"type": "number"}}


def test_example_options_are_pretty_printed_defaults(client: TestClient) -> None:
    core = client.get("/helper/example/options")
    assert core.headers["content-type"].startswith("application/json")
    assert core.text.startswith('{\n  "temperature": 0.8,\n  "topP": 0.9,\n  "topK": 40,')
    assert json.loads(core.text) == dict(CORE_DEFAULTS)
    assert "seed" not in core.text
    as_json = client.get("/helper/example/optionsjson")
    assert as_json.text.startswith('{\n  "temperature": 0,\n  "topP": 0.1,')
    assert json.loads(as_json.text) == dict(JSON_DEFAULTS)


def test_prompt_fromstring_verified_example(client: TestClient) -> None:
    answer = client.post("/helper/prompt/fromstring", json={"content": PROMPT_FILE}).json()
    assert answer == [
        {
            "llm": {"model": "abc.gguf", "gpulayer": 5},
            "options": {"temperature": 0.5},
            "system": "S",
            "user": "U line",
            "jsonresponse": '{"type":"string"}',
            "segment": {"mentator-llm-service": '{"useGrammar":false}'},
        }
    ]


def test_prompt_tostring_round_trip(client: TestClient) -> None:
    prompts = client.post("/helper/prompt/fromstring", json={"content": PROMPT_FILE}).json()
    text = client.post("/helper/prompt/tostring", json={"prompts": prompts})
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith("$$begin\n")
    assert text.text.endswith("$$end")
    again = client.post("/helper/prompt/fromstring", json={"content": text.text}).json()
    assert again == prompts


def test_prompt_tostring_bad_item_is_400(client: TestClient) -> None:
    # The original answered 500 (a serializer failure); a bad item is the client's (issue 14).
    for item in (1, None, [1], "x"):
        response = client.post("/helper/prompt/tostring", json={"prompts": [item]})
        assert response.status_code == 400, item
    response = client.post("/helper/prompt/tostring", json={"prompts": [1]})
    assert response.json()["error"].startswith("prompts[0] must be an object")
    assert (
        client.post("/helper/prompt/tostring", json={}).json()["error"]
        == "body must have required property 'prompts'"
    )


def test_check_options_answers_what_prompt_would_use_config_default_options(
    make_services: ServicesFactory,
) -> None:
    services = make_services(None, default_options={"temperature": 0.1, "maxTokens": 99})
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        empty = client.post("/check/options", json={"options": {}}).json()
        given = client.post("/check/options", json={"options": {"temperature": 0.9}}).json()
        bad = client.post("/check/options", json={"options": "x"}).json()
    assert empty["options"] == {**JSON_DEFAULTS, "temperature": 0.1, "maxTokens": 99}
    assert given["options"] == {**JSON_DEFAULTS, "temperature": 0.9, "maxTokens": 99}
    assert bad["options"] == empty["options"]
