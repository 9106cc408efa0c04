"""``/prompt`` with ``toolServer``: the loop, ``usedTools``, and every tool failure (§5.3), with
real PY tool processes and a scripted engine (the real model: integration/test_prompt_tools.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from mentator.context import ServiceContext
from mentator.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine

SPEC = {
    "type": "object",
    "description": "Adds two numbers.",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}
TOOLS = {
    "add": 'return args["a"] + args["b"]',
    "boom": "raise ValueError('no luck')",
    "sleepy": "import time\ntime.sleep(30)",
    "noisy": 'print("x" * 10_000_000)\nreturn 1',
    "secret": 'return len({{db-conn}}["password"])',
    "peek": "import os\nreturn sorted(os.environ)",
    "leaky": 'raise RuntimeError("cannot log in with " + {{other}}["password"])',
}


@pytest.fixture
def tools(services: ServiceContext, tmp_path: Path) -> ToolRegistry:
    tool_dir, env_dir = tmp_path / "tools", tmp_path / "envs"
    tool_dir.mkdir()
    env_dir.mkdir()
    for name, code in TOOLS.items():
        (tool_dir / f"{name}.tool.txt").write_text(
            f"$$spec\n{json.dumps(SPEC)}\n$$code=PY\n{code}\n"
        )
    (env_dir / "other.toolenv.txt").write_text('{"password": "hunter2"}')
    registry = ToolRegistry(tool_dir, env_dir, services.logger)
    registry.rescan()
    services.tools = registry
    return registry


def _call(name: str, a: int = 2, b: int = 3) -> str:
    return json.dumps({"name": f"{name}.tool.txt", "arguments": {"a": a, "b": b}})


def _body(tools: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "model": "alpha.gguf",
        "message": {"user": "Add 2 and 3"},
        "durationMsec": 20000,
        "toolServer": tools,
        **extra,
    }


def test_tool_called_and_reported(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry
) -> None:
    engine.replies = [_call("add"), _call("add", 1, 1), "The sum is 5."]
    answer = client.post("/prompt", json=_body(["ADD", "add.tool.txt"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {
        "loadModelStatus": "load",
        "usedTools": ["add.tool.txt", "add.tool.txt"],
        "data": "The sum is 5.",
    }
    first, second, third = engine.calls[-3:]
    # Offered in the system message; the call grammar names only the offered tool.
    assert "add.tool.txt" in first.messages[0]["content"]
    assert "add.tool.txt" in (first.grammar or "") and "boom" not in (first.grammar or "")
    assert second.messages[-1] == {
        "role": "user",
        "content": "Result of add.tool.txt: 5\nUse this result to answer the request.",
    }
    assert third.messages[-1]["content"].startswith("Result of add.tool.txt: 2")


def test_final_answer_keeps_its_schema(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry
) -> None:
    schema = {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}
    engine.replies = [_call("add"), '{"sum": 5}']
    answer = client.post(
        "/prompt", json=_body(["*"], format={"useGrammar": True, "jsonSchema": schema})
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["data"] == {"sum": 5}
    assert answer.json()["result"]["usedTools"] == ["add.tool.txt"]
    grammar = engine.calls[-1].grammar or ""
    assert "call-root" in grammar and '\\"sum\\":' in grammar  # compact: '{"sum":'


def test_model_that_never_calls_gets_empty_used_tools(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry
) -> None:
    engine.replies = ["5"]
    answer = client.post("/prompt", json=_body(["add"]))
    assert answer.json()["result"] == {"loadModelStatus": "load", "usedTools": [], "data": "5"}


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (
            "boom",
            'on get response text: Error: on use tool [PY] "boom.tool.txt": '
            "ValueError: no luck (line 1)",
        ),
        (
            "sleepy",
            'on get response text: Error: on use tool [PY] "sleepy.tool.txt": '
            "timed out after 1000 ms (toolTimeoutMsec)",
        ),
        (
            "noisy",
            'on get response text: Error: on use tool [PY] "noisy.tool.txt": '
            "wrote more than 1048576 bytes of output",
        ),
        (
            "secret",
            'on get response text: Error: tool "secret.tool.txt": env var "{{db-conn}}" '
            "not found in toolEnvDir",
        ),
    ],
)
def test_tool_failures_are_clear_and_the_service_keeps_serving(
    client: TestClient,
    engine: FakeEngine,
    tools: ToolRegistry,
    services: ServiceContext,
    tool: str,
    message: str,
) -> None:
    object.__setattr__(services.settings, "tool_timeout_msec", 1000)
    engine.replies = [_call(tool)]
    failed = client.post("/prompt", json=_body([tool]))
    assert failed.status_code == 500
    assert failed.json()["error"] == message
    engine.replies = ["still here"]
    assert client.post("/prompt", json=_body([])).json()["result"]["data"] == "still here"


def test_tool_environment_holds_nothing_of_the_service(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry
) -> None:
    engine.replies = [_call("peek"), "done"]
    client.post("/prompt", json=_body(["peek"]))
    result = engine.calls[-1].messages[-1]["content"]
    names = json.loads(result.split(": ", 1)[1].split("\n")[0])
    assert set(names) <= {"PATH", "LANG", "HOME", "LC_CTYPE"}, names
    assert "hunter2" not in json.dumps([c.messages for c in engine.calls])


def test_unknown_tool_names_are_a_clear_400(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry
) -> None:
    answer = client.post("/prompt", json=_body(["add", "db-pg"]))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith('toolServer: unknown tool "db-pg"; known tools: ')
    assert not [c for c in engine.calls if c.kind == "complete"]


def test_a_tool_error_never_carries_its_secrets(
    client: TestClient, engine: FakeEngine, tools: ToolRegistry, services: ServiceContext
) -> None:
    engine.replies = [_call("leaky")]
    failed = client.post("/prompt", json=_body(["leaky"]))
    assert failed.status_code == 500
    assert failed.json()["error"] == (
        'on get response text: Error: on use tool [PY] "leaky.tool.txt": '
        "RuntimeError: cannot log in with *** (line 1)"
    )
    assert services.chatlog is not None
    rows = services.chatlog.after_id(0, 100)
    assert rows
    assert "hunter2" not in json.dumps(rows, default=str)
