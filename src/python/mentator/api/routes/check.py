"""``/check/*`` — check a JSON Schema or generation options before using them (reference §2.7).

* ``/check/jsonresponse``: is the schema usable for response validation? 200 ``{"error": ""}`` or
  200 ``{"error": "JSON Schema validation failed: …"}``.
* ``/check/gbnf``: the same, then the schema → grammar conversion that ``/prompt`` with
  ``useGrammar`` really uses (port.md fix: the original checked with a narrower converter than it
  used). Failure: ``{"error": "GBNF conversion failed: <why>"}``; success adds ``grammar``.
* ``/check/options``: see `check_options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.coerce import RequestValidationError, validate
from mentator.api.deps import LoggerDep, SettingsDep, api_message, api_pipe
from mentator.api.requests import OPTIONS_CHECK_SCHEMA, OPTIONS_SCHEMA, SCHEMA_CHECK_SCHEMA, check
from mentator.api.schemas import CHECK_RESULT_SCHEMA, json_body_doc, json_response_doc
from mentator.config.options import JSON_DEFAULTS, merge_options, parse_options
from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.schema.validation import check_schema

router = APIRouter(prefix="/check", tags=["validation"])

NOT_AN_OBJECT = "Options must be a JSON object"

_GBNF_RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "Empty when the schema converts."},
        "grammar": {"type": "string", "description": "The GBNF grammar (only on success)."},
    },
}
_OPTIONS_RESULT_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "options": OPTIONS_SCHEMA},
}


def gbnf_check(schema: Any) -> dict[str, str]:
    problem = check_schema(schema)
    if problem:
        return {"error": problem}
    try:
        grammar = schema_to_gbnf(schema)
    except SchemaToGrammarError as error:
        return {"error": f"GBNF conversion failed: {error}"}
    return {"error": "", "grammar": grammar}


def check_options(options: Any, defaults: Mapping[str, object] = JSON_DEFAULTS) -> dict[str, Any]:
    """Normalise options the way ``/prompt`` would read them.

    Decision (reference §2.7 vs port.md): the original answered the given options with every
    missing key filled from the *core* defaults (a side effect of its response serializer) and
    never reported a bad value. Here the answer is what ``/prompt`` would use: the valid given keys
    over the config's ``defaultOptions`` (``defaults``; themselves over the JSON defaults) — and
    ``error`` lists every value ``/prompt`` would reject with 400 (``options/topK must be integer;
    …``), those keys falling back to their defaults. Values are coerced like in ``/prompt``
    (``"0.5"`` → 0.5).
    """
    if not isinstance(options, dict):
        return {"error": NOT_AN_OBJECT, "options": _filled(defaults, {})}
    coerced: dict[str, Any] = {}
    problems: list[str] = []
    properties: dict[str, Any] = OPTIONS_SCHEMA["properties"]
    for key, value in options.items():
        if value is None or key not in properties:
            continue
        try:
            coerced[key] = validate(properties[key], value, f"options/{key}")
        except RequestValidationError as error:
            problems.append(str(error))
    return {"error": "; ".join(problems), "options": _filled(defaults, coerced)}


def _filled(defaults: Mapping[str, object], given: Mapping[str, object]) -> dict[str, object]:
    # The same merge as the completion use-case: given over config defaults over JSON defaults.
    return parse_options(merge_options(defaults, given), fill=True, defaults=JSON_DEFAULTS)


@router.post(
    "/jsonresponse",
    summary="Check that a JSON Schema can validate answers",
    openapi_extra={**json_body_doc(SCHEMA_CHECK_SCHEMA), **json_response_doc(CHECK_RESULT_SCHEMA)},
)
async def check_jsonresponse(request: Request, logger: LoggerDep) -> JSONResponse:
    body = check(SCHEMA_CHECK_SCHEMA, await read_body(request))
    logger.trace(api_pipe(request), api_message(request))
    return JSONResponse({"error": check_schema(body["schema"])})


@router.post(
    "/gbnf",
    summary="Check a JSON Schema and its conversion to a decoding grammar",
    openapi_extra={**json_body_doc(SCHEMA_CHECK_SCHEMA), **json_response_doc(_GBNF_RESULT_SCHEMA)},
)
async def check_gbnf(request: Request, logger: LoggerDep) -> JSONResponse:
    body = check(SCHEMA_CHECK_SCHEMA, await read_body(request))
    logger.trace(api_pipe(request), api_message(request))
    return JSONResponse(gbnf_check(body["schema"]))


@router.post(
    "/options",
    summary="Normalise generation options",
    openapi_extra={
        **json_body_doc(OPTIONS_CHECK_SCHEMA),
        **json_response_doc(_OPTIONS_RESULT_SCHEMA),
    },
)
async def check_options_route(
    request: Request, logger: LoggerDep, settings: SettingsDep
) -> JSONResponse:
    body = check(OPTIONS_CHECK_SCHEMA, await read_body(request))
    logger.trace(api_pipe(request), api_message(request))
    return JSONResponse(check_options(body["options"], settings.default_options))
