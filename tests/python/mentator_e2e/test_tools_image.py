"""Issue 12's acceptance against the images: the official `openai` client (function calling with
`tool_choice="required"` and a named function, legacy `completions.create`, each also streamed)
on the CPU image, and a JS server-side tool run by `/prompt` in the universal image (which
carries Node.js)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import jsonschema
import openai
import pytest
from mentator_e2e.harness import (
    DATA_GID,
    DATA_UID,
    SERVICE_URL,
    Service,
    chown_tree,
    run_service,
)

pytestmark = pytest.mark.e2e

ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
TOOLS: Any = [
    {
        "type": "function",
        "function": {"name": "add", "description": "Adds two integers.", "parameters": ADD},
    }
]
ASK: Any = [{"role": "user", "content": "What is 2 plus 3?"}]
MATH_JS = Path("docs/tools/example-math-js.tool.txt")


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    return data


@pytest.fixture(scope="module")
def cpu_service(
    docker_client: docker.DockerClient, cpu_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    data = _data(tmp_path_factory.mktemp("openai"))
    with run_service(docker_client, cpu_image, data) as running:
        running.wait_http()
        yield running
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def oai(cpu_service: Service) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{SERVICE_URL}/v1", api_key="unused", timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="module")
def model(cpu_service: Service) -> str:
    return str(cpu_service.get_json("/state/models")["models"][0]["name"])


def _arguments(text: str) -> dict[str, Any]:
    arguments = json.loads(text)
    jsonschema.validate(arguments, ADD)
    return dict(arguments)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", ["required", "named"])
def test_openai_client_tool_calls(
    oai: openai.OpenAI, model: str, choice: str, stream: bool
) -> None:
    tool_choice: Any = (
        "required" if choice == "required" else {"type": "function", "function": {"name": "add"}}
    )
    if not stream:
        answer = oai.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, tool_choice=tool_choice, temperature=0
        )
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls and message.tool_calls[0].type == "function"
        call = message.tool_calls[0].function
        assert call.name == "add"
        _arguments(call.arguments)
        return
    pieces: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in oai.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice=tool_choice, temperature=0, stream=True
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for call_delta in delta.tool_calls or []:
            entry = pieces.setdefault(call_delta.index, {"name": "", "arguments": ""})
            if call_delta.function and call_delta.function.name:
                entry["name"] += call_delta.function.name
            if call_delta.function and call_delta.function.arguments:
                entry["arguments"] += call_delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert pieces[0]["name"] == "add"
    _arguments(pieces[0]["arguments"])


def test_openai_client_text_completions(oai: openai.OpenAI, model: str) -> None:
    whole = oai.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert whole.choices[0].text.strip()
    streamed = "".join(
        chunk.choices[0].text
        for chunk in oai.completions.create(
            model=model, prompt="One, two, three,", max_tokens=8, temperature=0, stream=True
        )
        if chunk.choices
    )
    assert streamed.strip()


def test_js_tool_runs_in_the_universal_image(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    data = _data(tmp_path)
    tools = data / "tools"
    tools.mkdir()
    shutil.copy(MATH_JS, tools / "calc.tool.txt")
    chown_tree(data, DATA_UID, DATA_GID)
    answer_schema = {"type": "object", "properties": {"result": {"type": "number"}}}
    with run_service(docker_client, universal_image, data) as running:
        running.wait_http()
        model = str(running.get_json("/state/models")["models"][0]["name"])
        response = running.post_json(
            "/prompt",
            {
                "model": model,
                "message": {"user": "Use the calc tool to compute 6 * 7."},
                "durationMsec": 600_000,
                "toolServer": ["calc"],
                "options": {"temperature": 0},
                "format": {"useGrammar": True, "jsonSchema": answer_schema},
            },
            timeout_s=600,
        )
        assert response.status_code == 200, f"{response.text}\n{running.log_block()}"
        result = response.json()["result"]
        assert result.get("usedTools") and set(result["usedTools"]) == {"calc.tool.txt"}, result
