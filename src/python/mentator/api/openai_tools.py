"""OpenAI function calling on ``/v1/chat/completions``: the request's ``tools``,
``tool_choice`` and ``parallel_tool_calls`` in, ``tool_calls`` and ``finish_reason:
"tool_calls"`` out (whole or streamed). The calls themselves are grammar-constrained by
`inference.toolcalls` (design: docs/tools.md); this module only translates the HTTP shapes.

Kept apart from `api/routes/openai.py`, which calls in at three places: the schema fragment
(`TOOL_FIELDS`), the request (`tool_chat_request`) and the answer (`with_tool_calls`, and
`ToolTranslator` for a stream).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mentator.api.coerce import JsonSchema
from mentator.api.errors import ApiError
from mentator.api.openai_wire import StreamEnd, WireCall
from mentator.engine.ports import CompletionDelta, Message
from mentator.inference.requests import ChatRequest
from mentator.inference.toolcalls import (
    FunctionTool,
    ToolOffer,
    call_grammar,
    call_schema,
    looks_like_call,
    offer_messages,
    parse_calls,
    plain_history,
)
from mentator.schema.gbnf import Whitespace

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
    body: dict[str, Any], chat: ChatRequest, whitespace: Whitespace = "compact"
) -> tuple[ChatRequest, ToolOffer | None]:
    """The chat request with the functions offered (instructions + call grammar), and with
    earlier calls and results in the conversation turned into plain turns."""
    offer = tool_offer(body)
    if offer is not None:
        offer = dataclasses.replace(offer, whitespace=whitespace)
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
            closing_schema=call_schema(offer),
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


class ToolTranslator:
    """The events of a chat stream with functions offered (`openai_wire.Translator`). Text
    (``auto``) streams as it comes; a call is held until complete (its JSON must parse) and sent
    as one ``tool_calls`` delta per call, with the whole ``arguments`` string."""

    def __init__(self, offer: ToolOffer) -> None:
        self._offer = offer
        self._held = ""
        self._calling: bool | None = None  # None: not decided yet (only blanks so far)

    def opening(self, call: WireCall) -> list[str]:
        return [call.delta_event({"role": "assistant", "content": None})]

    def piece(self, call: WireCall, delta: CompletionDelta) -> list[str]:
        if not delta.text:
            return []
        if self._calling is False:
            return [call.delta_event({"content": delta.text})]
        self._held += delta.text
        if self._calling is None and self._held.strip():
            self._calling = self._offer.mode != "auto" or looks_like_call(self._held)
            if not self._calling:
                return [call.delta_event({"content": self._held})]
        return []

    def closing(self, call: WireCall, end: StreamEnd) -> list[str]:
        if not self._calling:
            return []
        calls = parse_calls(self._held)
        end.finish = "tool_calls"
        return [call.delta_event({"tool_calls": [c.to_openai(i) for i, c in enumerate(calls)]})]
