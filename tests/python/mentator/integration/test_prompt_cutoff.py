"""Answers that finish within their budget (issue 20, item 6), on the real engine and model.

A question whose answer used to be cut at the token limit — the old grammar let the model spend
tokens on newlines and indentation, and at temperature 0 it rambles inside a string until
``maxTokens`` — finishes on the default config: compact JSON (``compactJson``), the DRY sampler
under a grammar (``grammarDry``) and, when the answer is cut all the same, one more try under the
schema with bounded strings, arrays and objects (``cutOffRetry``), validated against the original
schema.
With every measure switched off the same request is cut off, and the caller gets a 400 that
names the token limit, not a JSON parse error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from mentator_testing.service_process import running_service

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "summary": {"type": "string"}},
    "required": ["city", "summary"],
}
# Measured on SmolLM2-135M-Instruct Q4_1, temperature 0, maxTokens 128: the bounded-whitespace
# grammar without any measure ends at the limit inside "summary".
QUESTION = "Describe the weather in Paris as JSON."


def _ask(client: httpx.Client, model: str, max_tokens: int = 128) -> httpx.Response:
    return client.post(
        "/prompt",
        json={
            "model": model,
            "durationMsec": 300_000,
            "message": {"user": QUESTION},
            "options": {"maxTokens": max_tokens, "temperature": 0},
            "format": {"useGrammar": True, "jsonSchema": WEATHER},
        },
    )


@pytest.fixture(scope="module")
def old_client(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A service with every measure off: the grammar and sampling as before."""
    with (
        running_service(
            tmp_path_factory.mktemp("old"),
            engine_dir=engine_dir,
            model=test_model,
            parallel=1,
            extra={
                "compactJson": False,
                "grammarRepeatPenalty": False,
                "grammarDry": False,
                "cutOffRetry": False,
            },
        ) as svc,
        httpx.Client(base_url=svc.base_url, timeout=300) as http,
    ):
        yield http


def test_the_answer_that_was_cut_off_finishes_on_the_default_config(
    client: httpx.Client, model_name: str
) -> None:
    response = _ask(client, model_name)
    body: Any = response.json()
    assert response.status_code == 200, body
    jsonschema.validate(body["result"]["data"], WEATHER)


def test_without_the_measures_it_is_cut_off_with_an_error_naming_the_limit(
    old_client: httpx.Client, model_name: str
) -> None:
    response = _ask(old_client, model_name)
    body: Any = response.json()
    assert response.status_code == 400, body
    assert "cut off at the token limit (maxTokens 128)" in str(body), body


def test_a_cut_off_answer_names_the_limit_on_prompt_and_v1(
    client: httpx.Client, model_name: str
) -> None:
    response = _ask(client, model_name, max_tokens=4)
    assert response.status_code == 400, response.text
    assert "cut off at the token limit (maxTokens 4)" in response.text
    v1 = client.post(
        "/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 4,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": WEATHER, "strict": True},
            },
        },
    )
    assert v1.status_code == 400, v1.text
    assert "cut off at the token limit (max_tokens 4)" in v1.json()["error"]["message"]
