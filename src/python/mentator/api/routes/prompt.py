"""``POST /prompt`` — one chat turn, as text or as JSON checked against a JSON Schema.

Reference §2.4. The body is read and validated here with the original's coercions (errors →
the global handler, not stored); everything after is `inference.completion.Completions.prompt`,
which answers the original's envelope and stores the exchange.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.deps import CallerDep, CompletionsDep
from mentator.api.requests import PROMPT_SCHEMA, parse_prompt
from mentator.api.schemas import ERROR_SCHEMA, json_body_doc, loaded_result_schema

router = APIRouter(tags=["main"])

_SUCCESS_SCHEMA = loaded_result_schema(
    usedTools={
        "type": "array",
        "items": {"type": "string"},
        "description": "The server-side tools called, in call order with repeats;"
        " only when toolServer named at least one existing tool ([] if none was called).",
    },
    data={"description": "The answer: text, or JSON when `format` was given."},
)


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
    request: Request, completions: CompletionsDep, caller: CallerDep
) -> JSONResponse:
    parsed = parse_prompt(await read_body(request))
    return JSONResponse(await completions.prompt(parsed, caller))
