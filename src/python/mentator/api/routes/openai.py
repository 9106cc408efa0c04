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
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import (
    CallerDep,
    CompletionsDep,
    ContextDep,
    EmbeddingsDep,
    SettingsDep,
    StartedMsDep,
)
from mentator.api.errors import ApiError
from mentator.api.openai_request import SAMPLING_FIELDS, chat_options
from mentator.api.openai_tools import (
    TOOL_FIELDS,
    ToolTranslator,
    tool_chat_request,
    with_tool_calls,
)
from mentator.api.openai_wire import (
    PlainTranslator,
    Translator,
    WireCall,
    event_stream,
    include_usage,
    stream_response,
)
from mentator.api.requests import KEEP_ALIVE_SCHEMA, check, keep_alive_of
from mentator.api.schemas import json_body_doc
from mentator.engine.ports import Message
from mentator.inference.completion import whitespace_of
from mentator.inference.requests import ChatRequest, EmbeddingRequest

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
        **SAMPLING_FIELDS,
        "keep_alive": KEEP_ALIVE_SCHEMA,
        "max_completion_tokens": {"type": "integer", "minimum": 1},
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
        "keep_alive": KEEP_ALIVE_SCHEMA,
    },
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


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    return ChatRequest(
        model=body["model"],
        messages=chat_messages(body),
        options=chat_options(body),
        json_schema=chat_schema(body),
        body=body,
        keep_alive_s=keep_alive_of(body, "keep_alive"),
    )


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion",
    openapi_extra=json_body_doc(CHAT_SCHEMA),
)
async def chat_completions(
    request: Request, completions: CompletionsDep, caller: CallerDep, settings: SettingsDep
) -> Any:
    body: dict[str, Any] = check(CHAT_SCHEMA, await read_body(request))
    chat, offer = tool_chat_request(body, _chat_request(body), whitespace_of(settings))
    if body.get("stream"):
        stream = await completions.open_stream(chat, caller)
        translator: Translator = PlainTranslator() if offer is None else ToolTranslator(offer)
        events = event_stream(
            WireCall.new("chat", stream.model_name), stream, translator, include_usage(body)
        )
        return stream_response(events, stream)
    answer = await completions.chat(chat, caller)
    whole = WireCall.new("chat", answer.model_name).whole(answer.result)
    return JSONResponse(with_tool_calls(whole, offer))


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
    embedding = EmbeddingRequest(
        model=body["model"], texts=inputs, keep_alive_s=keep_alive_of(body, "keep_alive")
    )
    answer = await embedder.embed(embedding, caller)
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
async def models(context: ContextDep, started_ms: StartedMsDep) -> JSONResponse:
    """``loaded`` (ours, beside OpenAI's fields): whether the model is resident now."""
    created = started_ms // 1000
    engine = context.engine
    loaded = {entry.name for entry in engine.loaded_models()} if engine is not None else set()
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": model.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "mentator",
                    "loaded": model.name in loaded,
                }
                for model in context.registry.models()
            ],
        }
    )
