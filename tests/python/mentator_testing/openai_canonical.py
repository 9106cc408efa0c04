"""The official `openai` client's canonical tool call, asked the way its documentation shows.

`get_weather(city)` with `tool_choice="required"` and `max_tokens=128` (issue 20): one question and
one set of checks for the real-engine integration test and the CPU image's e2e test.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai

CANONICAL_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def ask_canonical_get_weather(client: openai.OpenAI, model: str) -> dict[str, Any]:
    """Ask it; assert complete, schema-valid `get_weather` calls; return the first's arguments."""
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
        tools=[CANONICAL_TOOL],
        tool_choice="required",
        max_tokens=128,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", answer
    calls = choice.message.tool_calls
    # At least one: `parallel_tool_calls` is true unless the request says otherwise, and on one
    # machine here (a newer Xeon: other rounding) SmolLM2 asks for the same call twice.
    assert calls, answer
    arguments: list[dict[str, Any]] = []
    for call in calls:
        assert call.type == "function" and call.function.name == "get_weather", answer
        arguments.append(json.loads(call.function.arguments))
        jsonschema.validate(arguments[-1], CANONICAL_TOOL["function"]["parameters"])
    return arguments[0]
