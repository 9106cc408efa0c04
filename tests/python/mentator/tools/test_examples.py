"""The example tools in docs/tools/ load without a problem, and the PY math example runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mentator.tools.execution import Limits, run_tool
from mentator.tools.registry import ToolRegistry
from mentator_testing.recording_logger import RecordingLogger

EXAMPLES = Path("docs/tools")


def test_examples_are_valid_tools() -> None:
    logger = RecordingLogger()
    registry = ToolRegistry(EXAMPLES, None, logger)
    registry.rescan()
    assert logger.messages("error") == []
    assert {tool.name: tool.lang for tool in registry.tools()} == {
        "example-http.tool.txt": "PY",
        "example-math-js.tool.txt": "JS",
        "example-math.tool.txt": "PY",
    }
    http = registry.find_tool("example-http")
    assert http is not None and http.placeholders() == ["example-api"]
    math = registry.find_tool("example-math")
    assert math is not None
    answer = asyncio.run(run_tool(math, {"a": 6, "b": 7, "op": "*"}, {}, Limits(10.0)))
    assert answer == 42
