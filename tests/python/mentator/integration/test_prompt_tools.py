"""``/prompt`` with ``toolServer`` on the real engine and SmolLM2: the model calls a PY tool
through the call grammar, the tool runs in its own process, ``usedTools`` reports it, and the
final answer still follows ``format.jsonSchema``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from mentator_testing.service_process import RunningService, running_service

SPEC = {
    "type": "object",
    "description": "Adds two numbers and returns the sum.",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}
ANSWER = {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}


@pytest.fixture(scope="module")
def tool_service(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    root = tmp_path_factory.mktemp("tools")
    (root / "tools").mkdir()
    (root / "envs").mkdir()
    (root / "tools" / "math.tool.txt").write_text(
        f'$$spec\n{json.dumps(SPEC)}\n$$code=PY\nreturn args["a"] + args["b"]\n'
    )
    with running_service(
        tmp_path_factory.mktemp("service"),
        engine_dir=engine_dir,
        model=test_model,
        extra={"toolDir": str(root / "tools"), "toolEnvDir": str(root / "envs")},
    ) as svc:
        yield svc


def test_prompt_calls_a_py_tool(tool_service: RunningService, test_model: Path) -> None:
    body = {
        "model": test_model.name,
        "message": {"user": "Use the math tool to add 17 and 25."},
        "durationMsec": 600000,
        "toolServer": ["math"],
        "options": {"temperature": 0},
        "format": {"useGrammar": True, "jsonSchema": ANSWER},
    }
    with httpx.Client(base_url=tool_service.base_url, timeout=700) as http:
        started = time.monotonic()
        response = http.post("/prompt", json=body)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["usedTools"] and set(result["usedTools"]) == {"math.tool.txt"}
        jsonschema.validate(result["data"], ANSWER)
        print(
            f"tool round trip: {elapsed:.1f} s, usedTools {result['usedTools']}, {result['data']}"
        )
        # The tool's discovery was logged under MANAGER.TOOL.
        assert '[MANAGER.TOOL] add tool(s): "math.tool.txt";' in tool_service.log_text()
