"""OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

So that any OpenAI client (SDKs, LangChain, curl scripts) works against the container. They share
the queue, the engine and the model lookup with ``/prompt``; option defaults are the service's
(``defaultOptions`` over the JSON defaults), and the request's OpenAI fields override them:
``temperature``, ``top_p``, ``max_tokens``/``max_completion_tokens``, ``stop``, ``seed``,
``presence_penalty``, ``frequency_penalty``. ``response_format`` ``json_object`` /
``json_schema`` become a decoding grammar with the same converter as ``/prompt``. ``stream: true``
answers server-sent events (``data: {chunk}`` … ``data: [DONE]``).

Errors here use OpenAI's shape ``{"error":{"message","type","param","code"}}`` (the global handler
in app.py does the same for validation errors and unknown ``/v1`` routes).
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import (
    CallerDep,
    CompletionsDep,
    ContextDep,
    EmbeddingsDep,
    RegistryDep,
)
from mentator.api.errors import ApiError
from mentator.api.metrics import MetricsDep
from mentator.api.openai_tools import (
    TOOL_FIELDS,
    chat_chunk,
    end_events,
    error_events,
    tool_chat_request,
    tool_event_stream,
    with_tool_calls,
)
from mentator.api.requests import check
from mentator.api.schemas import json_body_doc
from mentator.engine.client import CompletionResult, Message
from mentator.inference.completion import ChatStream
from mentator.inference.errors import InferenceError
from mentator.inference.requests import ChatRequest, EmbeddingRequest
from mentator.inference.timing import Duration

router = APIRouter(prefix="/v1", tags=["openai"])

_MESSAGE_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "description": "system, user, assistant or tool"},
        "content": {"description": "Text, or an array of content parts ({type: text, text})."},
    },
}

CHAT_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "items": _MESSAGE_SCHEMA},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "stop": {"description": "A string or an array of strings."},
        "seed": {"type": "integer", "minimum": 0},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "n": {"type": "integer", "minimum": 1, "maximum": 1, "description": "Only 1 is supported."},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "response_format": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "schema": {},
                        "strict": {"type": "boolean"},
                    },
                },
            },
        },
        **TOOL_FIELDS,  # function calling: api/openai_tools.py
    },
}

EMBEDDINGS_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string"},
        "input": {"description": "A string or an array of strings."},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
    },
}

# OpenAI field → our option name.
_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxTokens",
    "max_completion_tokens": "maxTokens",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "".join(texts)
    raise ApiError(400, "body/messages: content must be a string, an array of text parts, or null")


def chat_messages(body: dict[str, Any]) -> list[Message]:
    messages: list[Message] = [
        {"role": str(message["role"]), "content": _content_text(message.get("content"))}
        for message in body["messages"]
    ]
    if not messages:
        raise ApiError(400, "body/messages must NOT have fewer than 1 items")
    return messages


def chat_options(body: dict[str, Any]) -> dict[str, object]:
    """The request's OpenAI sampling fields under our option names (only those given)."""
    given: dict[str, object] = {
        ours: body[theirs]
        for theirs, ours in _OPTION_FIELDS.items()
        if body.get(theirs) is not None
    }
    stop = body.get("stop")
    if isinstance(stop, str):
        given["stopSequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        given["stopSequences"] = stop
    elif stop is not None:
        raise ApiError(400, "body/stop must be a string or an array of strings")
    return given


def chat_schema(body: dict[str, Any]) -> Any | None:
    """The JSON Schema ``response_format`` asks for (None: free text)."""
    response_format = body.get("response_format")
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        return {"type": "object"}
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise ApiError(400, "body/response_format/json_schema must have required property 'schema'")
    return spec["schema"]


@dataclass(frozen=True)
class _ChatCall:
    """The OpenAI identity of one answer (id, creation time, model name)."""

    completion_id: str
    created: int
    model_name: str


def _new_call(model_name: str) -> _ChatCall:
    return _ChatCall(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_name)


def _completion_json(call: _ChatCall, result: CompletionResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
    return {
        "id": call.completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model_name,
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason or "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _event_stream(
    call: _ChatCall, stream: ChatStream, include_usage: bool, tokens: list[int]
) -> AsyncIterator[str]:
    """SSE lines of one completion; the stream (its slot) is closed at the end, on an error, or
    when the client goes away (the generator is then closed)."""
    try:
        yield chat_chunk(call, {"role": "assistant", "content": ""}, None)
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async for delta in stream.deltas():
                if delta.text or delta.reasoning:
                    piece: dict[str, Any] = {}
                    if delta.text:
                        piece["content"] = delta.text
                    if delta.reasoning:
                        piece["reasoning_content"] = delta.reasoning
                    yield chat_chunk(call, piece, None)
                if delta.finish_reason:
                    finish = delta.finish_reason
                if delta.usage:
                    usage = delta.usage
        except InferenceError as error:
            for event in error_events(error):
                yield event
            return
        for event in end_events(call, finish, usage, include_usage, tokens):
            yield event
    finally:
        await stream.close()


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    return ChatRequest(
        model=body["model"],
        messages=chat_messages(body),
        options=chat_options(body),
        json_schema=chat_schema(body),
        body=body,
    )


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion",
    openapi_extra=json_body_doc(CHAT_SCHEMA),
)
async def chat_completions(
    request: Request, completions: CompletionsDep, caller: CallerDep, metrics: MetricsDep
) -> Any:
    body: dict[str, Any] = check(CHAT_SCHEMA, await read_body(request))
    chat, offer = tool_chat_request(body, _chat_request(body))
    if body.get("stream"):
        tokens: list[int] = []

        def done(duration: Duration) -> None:
            metrics.observe_completion(
                "/v1/chat/completions", duration.prompt_msec, duration.queue_msec, sum(tokens)
            )

        stream = await completions.open_stream(chat, caller, done)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        call = _new_call(stream.model_name)
        events = (
            tool_event_stream(call, stream, offer, include_usage, tokens)
            if offer is not None
            else _event_stream(call, stream, include_usage, tokens)
        )
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(stream.close),
        )
    answer = await completions.chat(chat, caller)
    duration = answer.duration
    metrics.observe_completion(
        "/v1/chat/completions",
        duration.prompt_msec,
        duration.queue_msec,
        answer.result.completion_tokens,
    )
    return JSONResponse(
        with_tool_calls(_completion_json(_new_call(answer.model_name), answer.result), offer)
    )


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ApiError(400, "body/input must be a string or an array of strings")


def _encode(vector: list[float], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


@router.post(
    "/embeddings",
    summary="OpenAI-compatible embeddings",
    openapi_extra=json_body_doc(EMBEDDINGS_SCHEMA),
)
async def embeddings(request: Request, embedder: EmbeddingsDep, caller: CallerDep) -> JSONResponse:
    body: dict[str, Any] = check(EMBEDDINGS_SCHEMA, await read_body(request))
    inputs = _embedding_inputs(body["input"])
    answer = await embedder.embed(EmbeddingRequest(model=body["model"], texts=inputs), caller)
    encoding = body.get("encoding_format", "float")
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _encode(vector, encoding)}
                for index, vector in enumerate(answer.vectors)
            ],
            "model": answer.model_name,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
    )


@router.get("/models", summary="OpenAI-compatible model list")
async def models(registry: RegistryDep, context: ContextDep) -> JSONResponse:
    created = context.started_ms // 1000
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": model.name, "object": "model", "created": created, "owned_by": "mentator"}
                for model in registry.models()
            ],
        }
    )
