"""OpenAI's wire shapes for ``/v1/chat/completions`` and ``/v1/completions``, whole and streamed:
the answer's identity (id, creation time, model), usage, chunks, the end of a stream and the
error event. One streaming loop (`event_stream`) serves plain chat, text and tool-call streams;
what differs between them is a `Translator` (how the engine's pieces become events).

A stream's events: the translator's opening events; its events for each piece; its closing
events; then the finish chunk, the usage chunk when the client asked for it
(``stream_options.include_usage``), and ``data: [DONE]``. A failure after the 200 was sent
travels as an error event (as OpenAI's does), then ``[DONE]``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from mentator.api.errors import openai_error_body
from mentator.engine.ports import CompletionDelta, CompletionResult
from mentator.inference.completion import ChatStream
from mentator.inference.errors import InferenceError
from mentator.jsontext import json_text

Family = Literal["chat", "text"]
DONE_EVENT = "data: [DONE]\n\n"

# (id prefix, object of a whole answer, object of a chunk) per family.
_OBJECTS: dict[Family, tuple[str, str, str]] = {
    "chat": ("chatcmpl-", "chat.completion", "chat.completion.chunk"),
    "text": ("cmpl-", "text_completion", "text_completion"),
}


def usage_json(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def event(data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"data: {json_text(data)}\n\n"


@dataclass(frozen=True)
class WireCall:
    """The OpenAI identity of one answer, and its shapes."""

    family: Family
    model_name: str
    completion_id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def new(cls, family: Family, model_name: str) -> WireCall:
        return cls(family, model_name, f"{_OBJECTS[family][0]}{uuid.uuid4().hex}")

    def choice(
        self, finish: str | None, *, text: str = "", delta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One choice: a chat chunk carries ``delta``, a text completion ``text``."""
        if self.family == "text":
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "delta": delta or {}, "finish_reason": finish}

    def body(
        self,
        choices: list[dict[str, Any]],
        usage: dict[str, int] | None = None,
        *,
        chunk: bool = True,
    ) -> dict[str, Any]:
        _, whole, piece = _OBJECTS[self.family]
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": piece if chunk else whole,
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return body

    def whole(self, result: CompletionResult) -> dict[str, Any]:
        """A whole (not streamed) answer."""
        finish = result.finish_reason or "stop"
        if self.family == "text":
            choice = self.choice(finish, text=result.text)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": result.text}
            if result.reasoning:
                message["reasoning_content"] = result.reasoning
            choice = {"index": 0, "message": message, "finish_reason": finish}
        usage = usage_json(result.prompt_tokens, result.completion_tokens)
        return self.body([choice], usage, chunk=False)

    def delta_event(self, delta: dict[str, Any]) -> str:
        """A chat chunk carrying ``delta``."""
        return event(self.body([self.choice(None, delta=delta)]))

    def text_event(self, text: str) -> str:
        """A piece of the answer's text, in this family's shape."""
        if self.family == "text":
            return event(self.body([self.choice(None, text=text)]))
        return self.delta_event({"content": text})


def error_events(error: InferenceError) -> list[str]:
    return [event(openai_error_body(error.code, error.message)), DONE_EVENT]


@dataclass
class StreamEnd:
    """How the engine's stream ended: its finish reason and usage (the last ones seen)."""

    finish: str | None = None
    usage: dict[str, Any] | None = None

    def see(self, delta: CompletionDelta) -> None:
        self.finish = delta.finish_reason or self.finish
        self.usage = delta.usage or self.usage


class Translator(Protocol):
    """How the engine's pieces become events, for one kind of stream."""

    def opening(self, call: WireCall) -> list[str]: ...

    def piece(self, call: WireCall, delta: CompletionDelta) -> list[str]: ...

    def closing(self, call: WireCall, end: StreamEnd) -> list[str]: ...


class PlainTranslator:
    """Chat or text: every piece as it comes (a chat chunk also carries reasoning)."""

    def opening(self, call: WireCall) -> list[str]:
        if call.family == "chat":
            return [call.delta_event({"role": "assistant", "content": ""})]
        return []

    def piece(self, call: WireCall, delta: CompletionDelta) -> list[str]:
        if call.family == "text" or not delta.reasoning:
            return [call.text_event(delta.text)] if delta.text else []
        piece: dict[str, Any] = {}
        if delta.text:
            piece["content"] = delta.text
        piece["reasoning_content"] = delta.reasoning
        return [call.delta_event(piece)]

    def closing(self, call: WireCall, end: StreamEnd) -> list[str]:
        return []


async def event_stream(
    call: WireCall, stream: ChatStream, translator: Translator, include_usage: bool
) -> AsyncIterator[str]:
    """The SSE lines of one streamed answer; the stream (its queue slot) is closed at the end,
    on an error, or when the client goes away (the generator is then closed)."""
    try:
        for line in translator.opening(call):
            yield line
        end = StreamEnd()
        try:
            async for delta in stream.deltas():
                end.see(delta)
                for line in translator.piece(call, delta):
                    yield line
            closing = translator.closing(call, end)
        except InferenceError as error:
            for line in error_events(error):
                yield line
            return
        for line in closing:
            yield line
        yield event(call.body([call.choice(end.finish or "stop")]))
        if end.usage is not None and include_usage:
            usage = usage_json(
                int(end.usage.get("prompt_tokens") or 0),
                int(end.usage.get("completion_tokens") or 0),
            )
            yield event(call.body([], usage))
        yield DONE_EVENT
    finally:
        await stream.close()


def include_usage(body: dict[str, Any]) -> bool:
    """Whether the client asked for the usage chunk at the end of a stream."""
    return bool((body.get("stream_options") or {}).get("include_usage"))


def stream_response(events: AsyncIterator[str], stream: ChatStream) -> StreamingResponse:
    """The HTTP answer of a stream; the stream is closed after it even when the events never
    started (the client left before the first byte)."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.close),
    )
