"""OpenAI function calling on ``/v1/chat/completions``: the request's ``tools``,
``tool_choice`` and ``parallel_tool_calls`` in, ``tool_calls`` and ``finish_reason:
"tool_calls"`` out (whole or streamed). The calls themselves are grammar-constrained by
`inference.toolcalls` (design: docs/tools.md); this module only translates the HTTP shapes.

Kept apart from `api/routes/openai.py`, which calls in at three places: the schema fragment
(`TOOL_FIELDS`), the request (`tool_chat_request`) and the answer (`with_tool_calls`,
`tool_event_stream`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

from mentator.api.coerce import JsonSchema
from mentator.api.errors import ApiError, openai_error_body
from mentator.engine.client import Message
from mentator.inference.completion import ChatStream
from mentator.inference.errors import InferenceError
from mentator.inference.requests import ChatRequest
from mentator.inference.toolcalls import (
    FunctionTool,
    ToolOffer,
    call_grammar,
    looks_like_call,
    offer_messages,
    parse_calls,
    plain_history,
)
from mentator.jsontext import json_text

TOOL_FIELDS: dict[str, JsonSchema] = {
    "tools": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"type": "string", "enum": ["function"]},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "parameters": {"type": "object"},
                        "strict": {"type": ["boolean", "null"]},
                    },
                },
            },
        },
    },
    "tool_choice": {
        "description": 'none, auto, required, or {"type":"function","function":{"name":...}}'
    },
    "parallel_tool_calls": {"type": "boolean"},
}

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _tools(body: dict[str, Any]) -> tuple[FunctionTool, ...]:
    tools: list[FunctionTool] = []
    for index, entry in enumerate(body.get("tools") or []):
        function = entry["function"]
        name = function["name"]
        if not _NAME.match(name):
            raise ApiError(
                400,
                f"body/tools/{index}/function/name must be 1 to 64 letters, digits, _ or -",
            )
        if any(tool.name == name for tool in tools):
            raise ApiError(400, f"body/tools/{index}/function/name: {name!r} is offered twice")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        tools.append(FunctionTool(name, str(function.get("description") or ""), parameters))
    return tuple(tools)


def tool_offer(body: dict[str, Any]) -> ToolOffer | None:
    """What the request offers the model (None: no tools, or ``tool_choice: "none"``)."""
    tools = _tools(body)
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls", True) is not False
    if choice is None or choice == "auto":
        choice = "auto"
        if not tools:
            return None
    if choice == "none":
        return None
    if not tools:
        raise ApiError(400, "body/tool_choice needs body/tools: offer at least one function")
    if choice == "auto" or choice == "required":
        return ToolOffer(tools, "auto" if choice == "auto" else "required", parallel)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if not any(tool.name == name for tool in tools):
            raise ApiError(
                400, f"body/tool_choice/function/name: {name!r} is not one of body/tools"
            )
        # A named function is exactly one call of it, as OpenAI does.
        return ToolOffer(tools, "named", False, forced=str(name))
    raise ApiError(
        400,
        'body/tool_choice must be "none", "auto", "required" or '
        '{"type": "function", "function": {"name": "<one of tools>"}}',
    )


def _uses_tools(body: dict[str, Any]) -> bool:
    return any(
        message.get("role") == "tool" or message.get("tool_calls")
        for message in body["messages"]
        if isinstance(message, dict)
    )


def tool_chat_request(
    body: dict[str, Any], chat: ChatRequest
) -> tuple[ChatRequest, ToolOffer | None]:
    """The chat request with the functions offered (instructions + call grammar), and with
    earlier calls and results in the conversation turned into plain turns."""
    offer = tool_offer(body)
    messages: list[Message] = chat.messages
    if offer is not None or _uses_tools(body):
        given = [
            {**raw, "content": flat.get("content")}
            for raw, flat in zip(body["messages"], chat.messages, strict=True)
        ]
        messages = plain_history(given)
    if offer is None:
        return dataclasses.replace(chat, messages=messages), None
    if offer.mode == "auto" and chat.json_schema is not None:
        raise ApiError(
            400,
            "body/response_format cannot be combined with tools when tool_choice is auto: "
            'use tool_choice "required"/a named function, or drop one of them',
        )
    return (
        dataclasses.replace(
            chat,
            messages=offer_messages(offer, messages),
            json_schema=None,
            grammar=call_grammar(offer),
        ),
        offer,
    )


def with_tool_calls(answer: dict[str, Any], offer: ToolOffer | None) -> dict[str, Any]:
    """A whole chat completion whose text is a call: ``tool_calls`` instead of ``content``."""
    choice = answer["choices"][0]
    text = choice["message"].get("content") or ""
    if offer is None or (offer.mode == "auto" and not looks_like_call(text)):
        return answer
    calls = parse_calls(text)
    choice["message"]["content"] = None
    choice["message"]["tool_calls"] = [call.to_openai() for call in calls]
    choice["finish_reason"] = "tool_calls"
    return answer


class ChatIdentity(Protocol):
    @property
    def completion_id(self) -> str: ...

    @property
    def created(self) -> int: ...

    @property
    def model_name(self) -> str: ...


def chat_chunk(
    call: ChatIdentity, delta: dict[str, Any], finish: str | None, usage: Any = None
) -> str:
    """One server-sent event of a streamed chat completion (a usage-only chunk has no choices)."""
    chunk: dict[str, Any] = {
        "id": call.completion_id,
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model_name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return f"data: {json_text(chunk)}\n\n"


def error_events(error: InferenceError) -> list[str]:
    """A failure after the 200 was sent travels as an error event (as OpenAI's does), then DONE."""
    return [
        f"data: {json_text(openai_error_body(error.code, error.message))}\n\n",
        "data: [DONE]\n\n",
    ]


def end_events(
    call: ChatIdentity,
    finish: str | None,
    usage: dict[str, Any] | None,
    include_usage: bool,
    tokens: list[int],
) -> list[str]:
    """The last events of a streamed chat answer: the finish chunk, the usage chunk when asked
    for, DONE; the generated tokens are counted into `tokens` (the metrics)."""
    events = [chat_chunk(call, {}, finish or "stop")]
    if usage is not None:
        tokens.append(int(usage.get("completion_tokens") or 0))
        if include_usage:
            events.append(chat_chunk(call, {}, None, usage))
    events.append("data: [DONE]\n\n")
    return events


async def tool_event_stream(
    call: ChatIdentity,
    stream: ChatStream,
    offer: ToolOffer,
    include_usage: bool,
    tokens: list[int],
) -> AsyncIterator[str]:
    """SSE of a chat completion with functions offered. Text (``auto``) streams as it comes;
    a call is held until complete (its JSON must parse) and sent as one ``tool_calls`` delta
    per call, with the whole ``arguments`` string."""
    try:
        yield chat_chunk(call, {"role": "assistant", "content": None}, None)
        held = ""
        calling: bool | None = None  # None: not decided yet (only blanks so far)
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async for delta in stream.deltas():
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
                if not delta.text:
                    continue
                if calling is False:
                    yield chat_chunk(call, {"content": delta.text}, None)
                    continue
                held += delta.text
                if calling is None and held.strip():
                    calling = offer.mode != "auto" or looks_like_call(held)
                    if not calling:
                        yield chat_chunk(call, {"content": held}, None)
            if calling:
                calls = parse_calls(held)
                yield chat_chunk(
                    call, {"tool_calls": [c.to_openai(i) for i, c in enumerate(calls)]}, None
                )
                finish = "tool_calls"
        except InferenceError as error:
            for event in error_events(error):
                yield event
            return
        for event in end_events(call, finish, usage, include_usage, tokens):
            yield event
    finally:
        await stream.close()
