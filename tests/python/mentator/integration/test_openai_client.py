"""The official ``openai`` client against the real service, engine and SmolLM2: legacy text
completions and function calling (tools), whole and streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from mentator_testing.openai_canonical import ask_canonical_get_weather
from mentator_testing.service_process import RunningService


@pytest.fixture(scope="module")
def oai(service: RunningService) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{service.base_url}/v1", api_key="unused", timeout=180)
    yield client
    client.close()


def test_text_completion(oai: openai.OpenAI, model_name: str) -> None:
    answer = oai.completions.create(
        model=model_name, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert answer.object == "text_completion"
    assert answer.id.startswith("cmpl-")
    assert answer.choices[0].text.strip()
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    # No chat template: the prompt is continued as given, so its tokens are only the prompt's.
    assert answer.usage.prompt_tokens < 12


def test_text_completion_stream(oai: openai.OpenAI, model_name: str) -> None:
    chunks = list(
        oai.completions.create(
            model=model_name,
            prompt="One, two, three,",
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text.strip()
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_text_completion_unknown_model(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model="nothing.gguf", prompt="x", max_tokens=2)
    assert 'Model not found: "nothing.gguf"' in str(caught.value)


WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two integers.",
            "parameters": ADD_PARAMETERS,
        },
    },
]
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "add": ADD_PARAMETERS}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
ADD_ASK: Any = [{"role": "user", "content": "What is 2 plus 3?"}]


def _check_calls(calls: Any, names: set[str]) -> None:
    assert calls, "no tool call"
    for call in calls:
        assert call.type == "function"
        assert call.id.startswith("call_")
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_choice_required(oai: openai.OpenAI, model_name: str) -> None:
    answer = oai.chat.completions.create(
        model=model_name,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=120,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    _check_calls(choice.message.tool_calls, set(SCHEMAS))


# OpenAI's canonical function-calling example, unbounded string and all (issue 20): it used to
# end at max_tokens inside a newline-per-token answer (400 "function call is incomplete"), then,
# with compact JSON, inside a string that never closed.
def test_canonical_get_weather_call_completes_within_128_tokens(
    oai: openai.OpenAI, model_name: str
) -> None:
    """On the DEFAULT config (compact JSON, DRY under the grammar, the closing step of a cut-off
    answer): SmolLM2 at temperature 0 used to loop inside the city's string until the limit."""
    ask_canonical_get_weather(oai, model_name)


def test_structured_output_json_schema_strict(oai: openai.OpenAI, model_name: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    answer = oai.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Which city is the capital of France?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": schema, "strict": True},
        },
        max_tokens=128,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    jsonschema.validate(json.loads(choice.message.content), schema)


def test_tool_choice_named(oai: openai.OpenAI, model_name: str) -> None:
    answer = oai.chat.completions.create(
        model=model_name,
        messages=ADD_ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=60,
        temperature=0,
    )
    calls = answer.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    _check_calls(calls, {"add"})


def test_tool_call_streamed(oai: openai.OpenAI, model_name: str) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=model_name,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=80,
            temperature=0,
            stream=True,
        )
    )
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert len(calls) == 1 and calls[0].index == 0
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments or ""), WEATHER_PARAMETERS)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_result_round_trip_and_none(oai: openai.OpenAI, model_name: str) -> None:
    """A tool result sent back (role tool) is understood by a template without tool support,
    and tool_choice none answers text."""
    first = oai.chat.completions.create(
        model=model_name,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=120,
        temperature=0,
        parallel_tool_calls=False,
    )
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    follow_up: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call.model_dump() for call in calls],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 21}'},
    ]
    final = oai.chat.completions.create(
        model=model_name,
        messages=follow_up,
        tools=TOOLS,
        tool_choice="none",
        max_tokens=40,
        temperature=0,
    )
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content
    assert not final.choices[0].message.tool_calls
