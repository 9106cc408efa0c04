"""``POST /prompt`` — one chat turn, as text or as JSON checked against a JSON Schema.

Reference §2.4.

Pipeline (steps before the queue fail fast even when the queue is busy):
1. body read + validated with the original's coercions (errors → global handler, not stored);
2. options: the request's valid keys over the config's ``defaultOptions``, then every key still
   missing from the JSON defaults (port.md fix: no silent reset to the library's core defaults);
3. grammar: when ``format.useGrammar`` and ``format.jsonSchema`` is truthy (JavaScript truth),
   the schema becomes GBNF with the same converter ``/check/gbnf`` uses → 400
   ``on create llama grammar: <err>``; a schema that cannot validate anything → 400
   ``on validate response: <err>`` (the original found out after generating, with a 500);
4. model lookup → 400 ``Model not found: "<name>"``;
5. queue slot + engine (``durationMsec`` bounds the wait and the generation, not a model load);
6. generation; its text (reasoning excluded, trimmed) is ``answerRaw``;
7. without ``format`` the text is the data; with it, the first fenced block (or the whole text) is
   parsed as JSON (400 ``on convert response text to JSON: <err>``) and validated (400
   ``JSON Schema validation failed: <path> <message>``).
Every error answer is logged and stored in the chat log; a success is stored when
``log.savePrompt`` is on. A client that disconnects cancels the generation (stored with code 499).

``toolServer`` and ``tool`` are accepted and ignored: server-side tools are not implemented in
this version, so ``usedTools`` never appears.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.deps import ServicesDep, api_message, api_pipe, json_text
from mentator.api.errors import ApiError, Duration, error_body
from mentator.api.metrics import MetricsDep
from mentator.api.pipeline import (
    CLIENT_CLOSED_STATUS,
    ClientDisconnected,
    Timing,
    engine_slot,
    find_model,
    require_engine,
    unless_disconnected,
    with_timeout,
)
from mentator.api.requests import PROMPT_SCHEMA, PromptRequest, parse_prompt
from mentator.api.schemas import DURATION_SCHEMA, ERROR_SCHEMA, json_body_doc
from mentator.config.options import JSON_DEFAULTS, merge_options, parse_options
from mentator.engine.errors import EngineError
from mentator.grammar.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.service import Services
from mentator.storage.database import StorageError
from mentator.validation import SchemaProblemError, parse_json_answer, validate_response

# node-llama-cpp's built-in default, which the original used when `message.system` is absent.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of "
    "answering something incorrectly. If you don't know the answer to a question, don't share "
    "false information."
)

router = APIRouter(tags=["main"])

_SUCCESS_SCHEMA = {
    "type": "object",
    "properties": {
        "duration": DURATION_SCHEMA,
        "result": {
            "type": "object",
            "properties": {
                "loadModelStatus": {"type": "string", "enum": ["load", "exists"]},
                "data": {"description": "The answer: text, or JSON when `format` was given."},
            },
        },
    },
}


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: ``{}`` and ``[]`` are true; ``0``, ``""``, ``null``, ``false`` not."""
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


@dataclass
class _Exchange:
    """What one /prompt call produced so far (for the answer, the log and the chat log)."""

    timing: Timing
    answer_raw: str | None = None
    load_status: str | None = None
    tokens: int | None = None


def build_options(services: Services, request_options: dict[str, Any] | None) -> dict[str, object]:
    """Request options over config defaults, completed from the JSON defaults (see module doc)."""
    merged = merge_options(services.settings.default_options, request_options)
    return parse_options(merged, fill=True, defaults=JSON_DEFAULTS)


def build_grammar(request: PromptRequest) -> str | None:
    if (
        request.format is None
        or not request.format.use_grammar
        or not js_truthy(request.format.json_schema)
    ):
        return None
    try:
        return schema_to_gbnf(request.format.json_schema)
    except SchemaToGrammarError as error:
        raise ApiError(400, f"on create llama grammar: {error}") from error


def check_response_schema(request: PromptRequest) -> None:
    """Fail before generating when the schema itself can never validate an answer."""
    if request.format is None:
        return
    try:
        validate_response(request.format.json_schema, None)
    except SchemaProblemError as error:
        raise ApiError(400, f"on validate response: {error}") from error


def answer_data(request: PromptRequest, text: str) -> Any:
    if request.format is None:
        return text
    try:
        data = parse_json_answer(text)
    except ValueError as error:
        raise ApiError(400, f"on convert response text to JSON: {error}") from error
    try:
        problem = validate_response(request.format.json_schema, data)
    except SchemaProblemError as error:
        raise ApiError(400, f"on validate response: {error}") from error
    if problem is not None:
        raise ApiError(400, problem)
    return data


def chat_messages(request: PromptRequest) -> list[dict[str, str]]:
    system = request.system if request.system is not None else DEFAULT_SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": request.user}]


async def _generate(services: Services, request: PromptRequest, exchange: _Exchange) -> Any:
    require_engine(services)
    options = build_options(services, request.options)
    grammar = build_grammar(request)
    check_response_schema(request)
    model = find_model(services, request.model)
    deadline = exchange.timing.started + request.duration_msec / 1000
    async with engine_slot(
        services, model, request.gpulayer, request.context_size, deadline, exchange.timing
    ) as (handle, status):
        exchange.load_status = status
        # durationMsec bounds the queue wait plus the generation; a model load does not count.
        budget_s = request.duration_msec / 1000 - exchange.timing.queue_ms / 1000
        generation_deadline = time.monotonic() + budget_s
        try:
            result = await with_timeout(
                handle.complete(chat_messages(request), options, grammar=grammar),
                generation_deadline,
            )
        except EngineError as error:
            raise ApiError(500, f"on get response text: {error.message}") from error
    exchange.answer_raw = result.text.strip()
    exchange.tokens = result.completion_tokens
    return answer_data(request, exchange.answer_raw)


def _store(
    services: Services,
    code: int,
    duration: Duration,
    request: PromptRequest,
    response: dict[str, Any],
    answer_raw: str | None,
) -> None:
    if services.chatlog is None:
        return
    try:
        services.chatlog.write(
            services.clock_ms(),
            code,
            duration.prompt_msec,
            duration.queue_msec,
            json_text(request.body),
            json_text(response),
            answer_raw,
        )
    except StorageError as error:
        services.health.db_failed(str(error), services.clock_ms())
        services.logger.error("DB", str(error))
    else:
        services.health.db_succeeded()


@router.post(
    "/prompt",
    summary="LLM completion (text or JSON validated against a JSON Schema)",
    openapi_extra={
        **json_body_doc(PROMPT_SCHEMA),
        "responses": {
            "200": {
                "description": "The answer",
                "content": {"application/json": {"schema": _SUCCESS_SCHEMA}},
            },
            "400": {
                "description": "Bad request or model output",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
            "500": {
                "description": "Engine error",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
            "503": {
                "description": "Queue full or service starting",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        },
    },
)
async def prompt_route(
    request: Request, services: ServicesDep, metrics: MetricsDep
) -> JSONResponse:
    exchange = _Exchange(timing=Timing())
    parsed = parse_prompt(await read_body(request))
    pipe, message = api_pipe(request), api_message(request)
    try:
        data = await unless_disconnected(request, _generate(services, parsed, exchange))
    except (ApiError, ClientDisconnected) as failure:
        duration = exchange.timing.duration()
        if isinstance(failure, ApiError):
            status, text, headers = failure.status, failure.message, failure.headers
        else:
            status, text, headers = CLIENT_CLOSED_STATUS, str(failure), {}
        body = error_body(text, duration)
        services.logger.error(pipe, message, text)
        _store(services, status, duration, parsed, body, exchange.answer_raw)
        return JSONResponse(body, status_code=status, headers=headers or None)
    duration = exchange.timing.duration()
    result: dict[str, Any] = {"loadModelStatus": exchange.load_status, "data": data}
    body = {"duration": duration.to_json(), "result": result}
    services.logger.debug(
        pipe,
        message,
        json_text({"duration": duration.to_json(), "loadModelStatus": exchange.load_status}),
    )
    metrics.observe_completion(
        "/prompt", duration.prompt_msec, duration.queue_msec, exchange.tokens
    )
    if services.settings.log.save_prompt:
        _store(services, 200, duration, parsed, body, exchange.answer_raw)
    return JSONResponse(body)
