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

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import CallerDep, CompletionsDep
from mentator.api.errors import ApiError, openai_error_body
from mentator.api.metrics import MetricsDep
from mentator.api.requests import check
from mentator.api.routes.openai import chat_options
from mentator.api.schemas import json_body_doc
from mentator.inference.completion import ChatStream
from mentator.inference.errors import InferenceError
from mentator.inference.requests import ChatRequest
from mentator.inference.timing import Duration
from mentator.jsontext import json_text

router = APIRouter(prefix="/v1", tags=["openai"])
ROUTE = "/v1/completions"

COMPLETIONS_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": {"type": "string"},
        "prompt": {"description": "A string, or an array holding one string."},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"description": "A string or an array of strings."},
        "seed": {"type": "integer", "minimum": 0},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "n": {"type": "integer", "minimum": 1, "maximum": 1, "description": "Only 1 is supported."},
        "best_of": {"type": "integer", "minimum": 1, "maximum": 1},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
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


class _Call:
    def __init__(self, model_name: str) -> None:
        self.completion_id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model_name = model_name

    def body(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return body


def _choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _events(
    call: _Call, stream: ChatStream, include_usage: bool, tokens: list[int]
) -> AsyncIterator[str]:
    try:
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async for delta in stream.deltas():
                if delta.text:
                    yield f"data: {json_text(call.body([_choice(delta.text, None)], None))}\n\n"
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
        except InferenceError as error:
            yield f"data: {json_text(openai_error_body(error.code, error.message))}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield f"data: {json_text(call.body([_choice('', finish or 'stop')], None))}\n\n"
        if usage is not None:
            tokens.append(int(usage.get("completion_tokens") or 0))
            if include_usage:
                counted = _usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
                yield f"data: {json_text(call.body([], counted))}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        await stream.close()


@router.post(
    "/completions",
    summary="OpenAI-compatible legacy text completion",
    openapi_extra=json_body_doc(COMPLETIONS_SCHEMA),
)
async def completions(
    request: Request, completions: CompletionsDep, caller: CallerDep, metrics: MetricsDep
) -> Any:
    body: dict[str, Any] = check(COMPLETIONS_SCHEMA, await read_body(request))
    _unsupported(body)
    text_request = ChatRequest(
        model=body["model"],
        messages=[],
        options=chat_options(body),
        prompt=prompt_text(body["prompt"]),
    )
    if body.get("stream"):
        tokens: list[int] = []

        def done(duration: Duration) -> None:
            metrics.observe_completion(
                ROUTE, duration.prompt_msec, duration.queue_msec, sum(tokens)
            )

        stream = await completions.open_stream(text_request, caller, done)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _events(_Call(stream.model_name), stream, include_usage, tokens),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(stream.close),
        )
    answer = await completions.chat(text_request, caller)
    result, duration = answer.result, answer.duration
    metrics.observe_completion(
        ROUTE, duration.prompt_msec, duration.queue_msec, result.completion_tokens
    )
    call = _Call(answer.model_name)
    return JSONResponse(
        call.body(
            [_choice(result.text, result.finish_reason or "stop")],
            _usage(result.prompt_tokens, result.completion_tokens),
        )
    )
