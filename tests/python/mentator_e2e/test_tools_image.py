"""Issue 12's acceptance against the image: the official `openai` client (function calling with
`tool_choice="required"` and a named function, legacy `completions.create`, each also streamed)
on the CPU image. (The JS tool in the universal image: test_universal_image.py.)"""

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

# The same tools and questions as tests/python/mentator/integration/test_openai_client.py.
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
TOOLS: Any = [
    {
        "type": "function",
        "function": {"name": name, "description": f"The {name} tool.", "parameters": schema},
    }
    for name, schema in SCHEMAS.items()
]
# (question, tool_choice, tools the answer may call)
CHOICES: dict[str, tuple[Any, Any, set[str]]] = {
    "required": (
        [{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        "required",
        set(SCHEMAS),
    ),
    "named": (
        [{"role": "user", "content": "What is 2 plus 3?"}],
        {"type": "function", "function": {"name": "add"}},
        {"add"},
    ),
}


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


def _check(name: str, arguments: str, allowed: set[str]) -> None:
    assert name in allowed, name
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_openai_client_tool_calls(
    oai: openai.OpenAI, model: str, choice: str, stream: bool
) -> None:
    messages, tool_choice, allowed = CHOICES[choice]
    common: Any = {
        "model": model,
        "messages": messages,
        "tools": TOOLS,
        "tool_choice": tool_choice,
        "parallel_tool_calls": False,
        "max_tokens": 120,
        "temperature": 0,
    }
    if not stream:
        answer = oai.chat.completions.create(**common)
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls and message.tool_calls[0].type == "function"
        _check(
            message.tool_calls[0].function.name, message.tool_calls[0].function.arguments, allowed
        )
        return
    pieces: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in oai.chat.completions.create(**common, stream=True):
        if not chunk.choices:
            continue
        for call_delta in chunk.choices[0].delta.tool_calls or []:
            entry = pieces.setdefault(call_delta.index, {"name": "", "arguments": ""})
            if call_delta.function and call_delta.function.name:
                entry["name"] += call_delta.function.name
            if call_delta.function and call_delta.function.arguments:
                entry["arguments"] += call_delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    _check(pieces[0]["name"], pieces[0]["arguments"], allowed)


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
