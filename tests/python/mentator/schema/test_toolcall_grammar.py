"""The function-call grammar (`inference.toolcalls`): which answers it lets the model write."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mentator.inference.errors import AnswerRejected, InvalidRequest
from mentator.inference.toolcalls import (
    FunctionTool,
    ToolOffer,
    call_grammar,
    offer_messages,
    parse_calls,
    plain_history,
)

# conftest.gbnf: GBNF text -> a recogniser with .accepts(text) (llama.cpp's grammar rules)
Grammar = Any

ADD = FunctionTool(
    "add",
    "Adds.",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
CITY = FunctionTool(
    "city_info",
    "",
    {
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/name"}},
        "required": ["city"],
        "$defs": {"name": {"type": "string", "maxLength": 5}},
    },
)


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # compact JSON: the grammars' default


def test_required_accepts_only_calls(gbnf: Callable[[str], Grammar]) -> None:
    grammar = gbnf(call_grammar(ToolOffer((ADD, CITY), "required", False)))
    assert grammar.accepts(_text({"name": "add", "arguments": {"a": 1, "b": 2}}))
    assert grammar.accepts(_text({"name": "city_info", "arguments": {"city": "Paris"}}))
    # Unknown name, arguments of the other tool, missing argument, free text: refused.
    assert not grammar.accepts(_text({"name": "sub", "arguments": {"a": 1, "b": 2}}))
    assert not grammar.accepts(_text({"name": "add", "arguments": {"city": "Paris"}}))
    assert not grammar.accepts(_text({"name": "add", "arguments": {"a": 1}}))
    assert not grammar.accepts(_text({"name": "city_info", "arguments": {"city": "Lisbon"}}))
    assert not grammar.accepts("Paris is nice")
    assert not grammar.accepts(_text([{"name": "add", "arguments": {"a": 1, "b": 2}}]))


def test_parallel_named_and_auto(gbnf: Callable[[str], Grammar]) -> None:
    call = {"name": "add", "arguments": {"a": 1, "b": 2}}
    parallel = gbnf(call_grammar(ToolOffer((ADD, CITY), "required", True)))
    assert parallel.accepts(_text([call, {"name": "city_info", "arguments": {"city": "Rome"}}]))
    assert not parallel.accepts(_text([]))
    named = gbnf(call_grammar(ToolOffer((ADD, CITY), "named", False, forced="city_info")))
    assert not named.accepts(_text(call))
    assert named.accepts(_text({"name": "city_info", "arguments": {"city": "Rome"}}))
    auto = gbnf(call_grammar(ToolOffer((ADD,), "auto", False)))
    assert auto.accepts(_text(call))
    assert auto.accepts("Four.")
    assert auto.accepts("")
    assert not auto.accepts('{"free": "json"}')


def test_messages_and_parsing() -> None:
    offer = ToolOffer((ADD,), "named", False, forced="add")
    messages = offer_messages(
        offer, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    )
    assert messages[0]["content"].startswith("S\n\nYou can call these functions")
    assert 'Call the function "add" now.' in messages[0]["content"]
    calls = parse_calls(_text([{"name": "add", "arguments": {"a": 1, "b": 2}}]))
    assert [(c.name, c.arguments) for c in calls] == [("add", {"a": 1, "b": 2})]
    with pytest.raises(AnswerRejected, match="cut off at the token limit"):
        parse_calls('{"name": "add", "argu')
    history = plain_history(
        [
            {"role": "user", "content": "2+3?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "add", "arguments": '{"a":2,"b":3}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "5"},
        ]
    )
    assert history[1] == {
        "role": "assistant",
        "content": '{"name": "add", "arguments": {"a": 2, "b": 3}}',
    }
    assert history[2] == {"role": "user", "content": "Result of add: 5"}


def test_remote_ref_is_a_clear_error() -> None:
    tool = FunctionTool(
        "x", "", {"type": "object", "properties": {"y": {"$ref": "#/properties/z"}}}
    )
    with pytest.raises(InvalidRequest, match="not supported in tool parameters"):
        call_grammar(ToolOffer((tool,), "required", False))
