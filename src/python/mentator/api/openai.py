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
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import ServicesDep, api_message, api_pipe, json_text
from mentator.api.errors import ApiError
from mentator.api.metrics import MetricsDep
from mentator.api.pipeline import (
    ClientDisconnected,
    Timing,
    engine_slot,
    find_model,
    require_engine,
    unless_disconnected,
)
from mentator.api.requests import check
from mentator.api.schemas import json_body_doc
from mentator.config.options import JSON_DEFAULTS, merge_options, parse_options
from mentator.engine.errors import EngineError
from mentator.grammar.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.service import EngineHandlePort, Services

router = APIRouter(prefix="/v1", tags=["openai"])

OPENAI_PREFIX = "/v1/"

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


def error_type(status: int) -> str:
    return "invalid_request_error" if status < 500 else "server_error"


def openai_error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": code}}


def openai_error_response(error: ApiError) -> JSONResponse:
    code = "model_not_found" if error.message.startswith("Model not found") else None
    return JSONResponse(
        openai_error_body(error.status, error.message, code),
        status_code=error.status,
        headers=error.headers or None,
    )


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


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = [
        {"role": str(message["role"]), "content": _content_text(message.get("content"))}
        for message in body["messages"]
    ]
    if not messages:
        raise ApiError(400, "body/messages must NOT have fewer than 1 items")
    return messages


def chat_options(services: Services, body: dict[str, Any]) -> dict[str, object]:
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
    merged = merge_options(services.settings.default_options, given)
    return parse_options(merged, fill=True, defaults=JSON_DEFAULTS)


def chat_grammar(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        schema: Any = {"type": "object"}
    else:
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ApiError(
                400, "body/response_format/json_schema must have required property 'schema'"
            )
        schema = spec["schema"]
    try:
        return schema_to_gbnf(schema)
    except SchemaToGrammarError as error:
        raise ApiError(400, f"on create llama grammar: {error}") from error


@dataclass(frozen=True)
class _ChatCall:
    completion_id: str
    created: int
    model_name: str
    messages: list[dict[str, str]]
    options: dict[str, object]
    grammar: str | None


def _completion_json(
    call: _ChatCall,
    text: str,
    reasoning: str | None,
    finish: str | None,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": call.completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _chunk(
    call: _ChatCall, delta: dict[str, Any], finish: str | None, usage: dict[str, Any] | None = None
) -> str:
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


class _StreamLease:
    """The queue slot + engine handle held by one streamed answer; closed exactly once, by the
    stream's end, its cancellation (client gone) or, if it never started, the response's
    background task."""

    def __init__(self, stack: AsyncExitStack, on_done: Callable[[int], None]) -> None:
        self._stack = stack
        self._on_done = on_done
        self._closed = False

    async def close(self, tokens: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stack.aclose()
        self._on_done(tokens)


async def _event_stream(
    call: _ChatCall, handle: EngineHandlePort, lease: _StreamLease, include_usage: bool
) -> AsyncIterator[str]:
    """SSE lines of one completion (see `_StreamLease` for the release of its resources)."""
    tokens = 0
    try:
        yield _chunk(call, {"role": "assistant", "content": ""}, None)
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async for delta in handle.stream(call.messages, call.options, grammar=call.grammar):
                if delta.text or delta.reasoning:
                    piece: dict[str, Any] = {}
                    if delta.text:
                        piece["content"] = delta.text
                    if delta.reasoning:
                        piece["reasoning_content"] = delta.reasoning
                    yield _chunk(call, piece, None)
                if delta.finish_reason:
                    finish = delta.finish_reason
                if delta.usage:
                    usage = delta.usage
        except EngineError as error:
            # The 200 status is already sent: the error travels as an event, like OpenAI does.
            failure = openai_error_body(500, f"on get response text: {error.message}")
            yield f"data: {json_text(failure)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield _chunk(call, {}, finish or "stop")
        if usage is not None:
            tokens = int(usage.get("completion_tokens") or 0)
            if include_usage:
                yield _chunk(call, {}, None, usage)
        yield "data: [DONE]\n\n"
    finally:
        await lease.close(tokens)


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion",
    openapi_extra=json_body_doc(CHAT_SCHEMA),
)
async def chat_completions(request: Request, services: ServicesDep, metrics: MetricsDep) -> Any:
    timing = Timing()
    body: dict[str, Any] = check(CHAT_SCHEMA, await read_body(request))
    pipe, message = api_pipe(request), api_message(request)
    try:
        require_engine(services)
        model = find_model(services, body["model"])
        call = _ChatCall(
            completion_id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model_name=model.name,
            messages=chat_messages(body),
            options=chat_options(services, body),
            grammar=chat_grammar(body),
        )
        if body.get("stream"):
            stack = AsyncExitStack()
            handle, _status = await stack.enter_async_context(
                engine_slot(services, model, None, None, None, timing)
            )

            def on_done(tokens: int) -> None:
                duration = timing.duration()
                metrics.observe_completion(
                    "/v1/chat/completions", duration.prompt_msec, duration.queue_msec, tokens
                )
                services.logger.debug(
                    pipe, message, json_text({"duration": duration.to_json(), "stream": True})
                )

            lease = _StreamLease(stack, on_done)
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _event_stream(call, handle, lease, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                background=BackgroundTask(lease.close),
            )
        result = await unless_disconnected(request, _complete(services, model, call, timing))
    except ApiError as failure:
        services.logger.error(pipe, message, failure.message)
        return openai_error_response(failure)
    except ClientDisconnected as gone:
        services.logger.error(pipe, message, str(gone))
        return JSONResponse(openai_error_body(499, str(gone)), status_code=499)
    duration = timing.duration()
    metrics.observe_completion(
        "/v1/chat/completions",
        duration.prompt_msec,
        duration.queue_msec,
        result["usage"]["completion_tokens"],
    )
    services.logger.debug(pipe, message, json_text({"duration": duration.to_json()}))
    return JSONResponse(result)


async def _complete(
    services: Services, model: Any, call: _ChatCall, timing: Timing
) -> dict[str, Any]:
    async with engine_slot(services, model, None, None, None, timing) as (handle, _status):
        try:
            result = await handle.complete(call.messages, call.options, grammar=call.grammar)
        except EngineError as error:
            raise ApiError(500, f"on get response text: {error.message}") from error
    return _completion_json(
        call,
        result.text,
        result.reasoning,
        result.finish_reason,
        result.prompt_tokens,
        result.completion_tokens,
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


async def _embed_all(
    services: Services, model: Any, inputs: list[str], timing: Timing
) -> list[list[float]]:
    loaded = require_engine(services).current()
    gpulayer, context_size = (
        (loaded.gpulayer, loaded.context_size)
        if loaded is not None and loaded.name == model.name
        else (None, None)
    )
    vectors: list[list[float]] = []
    async with engine_slot(services, model, gpulayer, context_size, None, timing) as (
        handle,
        _status,
    ):
        for text in inputs:
            try:
                vectors.append(await handle.embed(text))
            except EngineError as error:
                raise ApiError(500, error.message) from error
    return vectors


@router.post(
    "/embeddings",
    summary="OpenAI-compatible embeddings",
    openapi_extra=json_body_doc(EMBEDDINGS_SCHEMA),
)
async def embeddings(request: Request, services: ServicesDep) -> JSONResponse:
    timing = Timing()
    body: dict[str, Any] = check(EMBEDDINGS_SCHEMA, await read_body(request))
    pipe, message = api_pipe(request), api_message(request)
    try:
        require_engine(services)
        model = find_model(services, body["model"])
        inputs = _embedding_inputs(body["input"])
        vectors = await unless_disconnected(request, _embed_all(services, model, inputs, timing))
    except ApiError as failure:
        services.logger.error(pipe, message, failure.message)
        return openai_error_response(failure)
    except ClientDisconnected as gone:
        services.logger.error(pipe, message, str(gone))
        return JSONResponse(openai_error_body(499, str(gone)), status_code=499)
    encoding = body.get("encoding_format", "float")
    services.logger.debug(
        pipe, message, json_text({"duration": timing.duration().to_json(), "inputs": len(inputs)})
    )
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _encode(vector, encoding)}
                for index, vector in enumerate(vectors)
            ],
            "model": model.name,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
    )


@router.get("/models", summary="OpenAI-compatible model list")
async def models(services: ServicesDep) -> JSONResponse:
    created = services.started_ms // 1000
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": model.name, "object": "model", "created": created, "owned_by": "mentator"}
                for model in services.registry.models()
            ],
        }
    )
