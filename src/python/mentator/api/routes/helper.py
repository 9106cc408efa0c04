"""``/helper/*`` — examples and the prompt-file format (reference §2.7).

Failures inside these handlers answer 500 with the error envelope; calls are logged at trace level.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from mentator.api.body import read_body
from mentator.api.deps import LoggerDep, api_message, api_pipe
from mentator.api.errors import ApiError
from mentator.api.requests import PROMPT_FROM_STRING_SCHEMA, PROMPT_TO_STRING_SCHEMA, check
from mentator.api.schemas import json_body_doc
from mentator.config.options import CORE_DEFAULTS, JSON_DEFAULTS
from mentator.promptfile import PromptFormatError, format_prompt_file, parse_prompt_file

router = APIRouter(prefix="/helper", tags=["helper"])

# The original's example: an array of people, each with a required name and age.
EXAMPLE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
}


def pretty_json(value: Any) -> str:
    """``JSON.stringify(value, null, 2)``."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@router.post(
    "/prompt/fromstring",
    summary="Parse prompt-file text into prompt objects",
    openapi_extra=json_body_doc(PROMPT_FROM_STRING_SCHEMA),
)
async def prompt_from_string(request: Request, logger: LoggerDep) -> JSONResponse:
    body = check(PROMPT_FROM_STRING_SCHEMA, await read_body(request))
    logger.trace(api_pipe(request), api_message(request))
    try:
        prompts = parse_prompt_file(body["content"])
    except ValueError as error:
        raise ApiError(500, str(error)) from error
    return JSONResponse(prompts)


@router.post(
    "/prompt/tostring",
    summary="Write prompt objects as prompt-file text",
    response_class=PlainTextResponse,
    openapi_extra=json_body_doc(PROMPT_TO_STRING_SCHEMA),
)
async def prompt_to_string(request: Request, logger: LoggerDep) -> PlainTextResponse:
    body = check(PROMPT_TO_STRING_SCHEMA, await read_body(request))
    logger.trace(api_pipe(request), api_message(request))
    try:
        text = format_prompt_file(body["prompts"])
    except PromptFormatError as error:
        # The original answered 500 here; the items are the client's input: a 400 (issue 14).
        raise ApiError(400, str(error)) from error
    return PlainTextResponse(text)


@router.get("/example/jsonresponse", summary="An example JSON Schema (as a string)")
async def example_jsonresponse(request: Request, logger: LoggerDep) -> JSONResponse:
    logger.trace(api_pipe(request), api_message(request))
    return JSONResponse({"schema": pretty_json(EXAMPLE_SCHEMA)})


@router.get("/example/options", summary="The core option defaults", response_class=JSONResponse)
async def example_options(request: Request, logger: LoggerDep) -> Response:
    logger.trace(api_pipe(request), api_message(request))
    return Response(pretty_json(dict(CORE_DEFAULTS)), media_type="application/json")


@router.get("/example/optionsjson", summary="The JSON option defaults", response_class=JSONResponse)
async def example_options_json(request: Request, logger: LoggerDep) -> Response:
    logger.trace(api_pipe(request), api_message(request))
    return Response(pretty_json(dict(JSON_DEFAULTS)), media_type="application/json")
