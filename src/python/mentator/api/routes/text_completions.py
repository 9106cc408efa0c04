"""OpenAI's legacy text completions: ``POST /v1/completions``.

The prompt goes to the engine as given (llama-server's ``/v1/completions``: no chat template),
through the same use-case as ``/v1/chat/completions`` (queue, model lookup, option defaults,
logging). Sampling fields are the chat route's (``temperature``, ``top_p``, ``max_tokens``,
``stop``, ``seed``, penalties); ``stream: true`` answers server-sent events of
``text_completion`` chunks. Differences from OpenAI, all answered 400 rather than ignored:
one prompt per request (a string, or an array holding one string), ``n``/``best_of`` only 1,
no ``echo``, no ``suffix``, no ``logprobs``. Without ``max_tokens`` the service's
``defaultOptions.maxTokens`` applies (OpenAI's default is 16).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import CallerDep, CompletionsDep
from mentator.api.errors import ApiError
from mentator.api.openai_request import SAMPLING_FIELDS, chat_options
from mentator.api.openai_wire import (
    PlainTranslator,
    WireCall,
    event_stream,
    include_usage,
    stream_response,
)
from mentator.api.requests import KEEP_ALIVE_SCHEMA, check, keep_alive_of
from mentator.api.schemas import json_body_doc
from mentator.inference.requests import ChatRequest

router = APIRouter(prefix="/v1", tags=["openai"])

COMPLETIONS_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": {"type": "string"},
        "prompt": {"description": "A string, or an array holding one string."},
        **SAMPLING_FIELDS,
        "keep_alive": KEEP_ALIVE_SCHEMA,
        "best_of": {"type": "integer", "minimum": 1, "maximum": 1},
        "echo": {"type": "boolean"},
        "suffix": {"type": ["string", "null"]},
        "logprobs": {"type": ["integer", "null"]},
        "user": {"type": "string"},
    },
}


def prompt_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise ApiError(
        400, "body/prompt must be a string or an array of one string (one prompt per request)"
    )


def _unsupported(body: dict[str, Any]) -> None:
    if body.get("echo"):
        raise ApiError(400, "body/echo is not supported: send echo false or leave it out")
    if body.get("suffix"):
        raise ApiError(400, "body/suffix is not supported (no fill-in-the-middle): leave it out")
    if body.get("logprobs"):
        raise ApiError(400, "body/logprobs is not supported: leave it out")


@router.post(
    "/completions",
    summary="OpenAI-compatible legacy text completion",
    openapi_extra=json_body_doc(COMPLETIONS_SCHEMA),
)
async def completions(request: Request, completions: CompletionsDep, caller: CallerDep) -> Any:
    body: dict[str, Any] = check(COMPLETIONS_SCHEMA, await read_body(request))
    _unsupported(body)
    text_request = ChatRequest(
        model=body["model"],
        messages=[],
        options=chat_options(body),
        prompt=prompt_text(body["prompt"]),
        body=body,
        keep_alive_s=keep_alive_of(body, "keep_alive"),
    )
    if body.get("stream"):
        stream = await completions.open_stream(text_request, caller)
        call = WireCall.new("text", stream.model_name)
        events = event_stream(call, stream, PlainTranslator(), include_usage(body))
        return stream_response(events, stream)
    answer = await completions.chat(text_request, caller)
    return JSONResponse(WireCall.new("text", answer.model_name).whole(answer.result))
