"""What a stored or replayed request answered, in one shape for the comparison.

The chat log stores the request body as the service received it, but not its route. The route is
told by the body's shape, which the three stored routes' schemas make unambiguous:
``/prompt`` bodies have a ``message`` object and ``durationMsec``; ``/v1/chat/completions`` bodies
a ``messages`` array; ``/v1/completions`` bodies a ``prompt``. Embeddings are never stored.

The stored answer is the envelope the service sent for ``/prompt``, and for the ``/v1`` routes the
envelope the chat log keeps (``result.data`` = the answer text, whole or streamed); the replayed
answer is read from what the service sends now (``result.data``, or OpenAI's
``choices[0].message.content`` / ``choices[0].text``, or the streamed deltas put together).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROMPT = "/prompt"
V1_CHAT = "/v1/chat/completions"
V1_TEXT = "/v1/completions"
# The ``--route`` names (the metrics' route families), and the paths themselves.
ROUTES: Mapping[str, str] = {
    "prompt": PROMPT,
    "v1-chat": V1_CHAT,
    "v1-completions": V1_TEXT,
    PROMPT: PROMPT,
    V1_CHAT: V1_CHAT,
    V1_TEXT: V1_TEXT,
}


def route_of(body: Any) -> str | None:
    """The route a stored body was sent to, from its shape (see the module docstring)."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("message"), dict) and "durationMsec" in body:
        return PROMPT
    if isinstance(body.get("messages"), list):
        return V1_CHAT
    if "prompt" in body and "model" in body:
        return V1_TEXT
    return None


@dataclass(frozen=True)
class Answer:
    """A status code and the answer's data (code 200) or the error's text."""

    code: int
    data: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == 200 and self.error is None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def stored_answer(code: int, response: str) -> Answer:
    """The chat log's answer: the envelope ``{"result": {"data": ...}}`` or ``{"error": ...}``."""
    envelope = _loads(response)
    if not isinstance(envelope, dict):
        return Answer(code, error=f"unreadable stored response: {response[:200]}")
    if code != 200:
        return Answer(code, error=str(envelope.get("error", "")))
    result = envelope.get("result")
    return Answer(code, data=result.get("data") if isinstance(result, dict) else None)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return json.dumps(body)[:500] if body is not None else "no JSON body"


def _calls(tool_calls: Iterable[Any]) -> list[dict[str, Any]]:
    calls = []
    for call in tool_calls:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments")
        parsed = _loads(arguments) if isinstance(arguments, str) else arguments
        calls.append({"name": function.get("name"), "arguments": parsed})
    return calls


def replayed_answer(route: str, status: int, body: Any) -> Answer:
    """A whole answer of the service now (its JSON body)."""
    if status != 200:
        return Answer(status, error=_error_text(body))
    if route == PROMPT:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            return Answer(status, error=f"no result in the answer: {_error_text(body)}")
        return Answer(status, data=result.get("data"))
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Answer(status, error=f"no choices in the answer: {_error_text(body)}")
    choice = choices[0]
    if route == V1_TEXT:
        return Answer(status, data=choice.get("text"))
    message = choice.get("message") or {}
    if message.get("tool_calls"):
        return Answer(status, data={"tool_calls": _calls(message["tool_calls"])})
    return Answer(status, data=message.get("content") or "")


def streamed_answer(status: int, lines: Iterable[str]) -> Answer:
    """A streamed ``/v1`` answer: the server-sent events' text put together (an error event
    makes it an error)."""
    text = ""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        chunk = _loads(payload)
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            return Answer(status if status != 200 else 500, error=_error_text(chunk))
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                delta = choice.get("delta") or {}
                text += str(delta.get("content") or choice.get("text") or "")
    return Answer(status, data=text)
