"""Request DTOs of the wire-compatible routes: their schemas and their parsing, in one module.

Each schema is plain JSON Schema (property order = the original's DTO order, which decides which
error is reported first); `coerce.validate` applies it with the original's coercions and
messages, and the OpenAPI document shows the very same dicts. Unknown extra keys are kept (the
stored /prompt request shows them) and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from mentator.api.coerce import JsonSchema, RequestValidationError, validate
from mentator.api.errors import ApiError
from mentator.config.options import OPTION_SPECS, OptionSpec
from mentator.inference.requests import (
    EmbeddingRequest,
    PromptFormat,
    PromptRequest,
    parse_keep_alive,
)


def _option_schema(spec: OptionSpec) -> JsonSchema:
    schema: JsonSchema
    if spec.kind == "boolean":
        schema = {"type": "boolean"}
    elif spec.kind == "string_array":
        schema = {"type": "array", "items": {"type": "string"}}
    elif spec.kind == "number_map":
        schema = {"type": "object", "additionalProperties": {"type": "number"}}
    else:
        schema = {"type": spec.kind}
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    schema["description"] = spec.description
    return schema


OPTIONS_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Generation options; keys not given come from the config's defaultOptions.",
    "properties": {spec.key: _option_schema(spec) for spec in OPTION_SPECS},
}

_ANY: JsonSchema = {}

KEEP_ALIVE_DOC = (
    "How long the model stays loaded once idle: seconds (a number) or a duration text"
    ' ("90s", "5m", "1h"); 0 = unload when done, negative = until evicted; absent = the'
    " config's keepAliveSec."
)
KEEP_ALIVE_SCHEMA: JsonSchema = {"description": KEEP_ALIVE_DOC}


def keep_alive_of(body: Mapping[str, Any], name: str) -> float | None:
    """The body's keep-alive field in seconds (None: absent or null); a 400 saying the
    accepted forms otherwise."""
    value = body.get(name)
    if value is None:
        return None
    try:
        return parse_keep_alive(value)
    except ValueError as error:
        raise ApiError(400, f"body/{name}: {error}") from error


PROMPT_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "message", "durationMsec"],
    "properties": {
        "model": {"type": "string", "description": "Model name as listed by /state/models."},
        "gpulayer": {
            "type": "number",
            "minimum": 0,
            "description": "Layers offloaded to the GPU; absent = auto.",
        },
        "contextSize": {
            "type": "integer",
            "minimum": 512,
            "description": "Context window; absent = model default.",
        },
        "message": {
            "type": "object",
            "required": ["user"],
            "properties": {
                "system": {
                    "type": "string",
                    "description": "System prompt; absent = a generic assistant prompt.",
                },
                "user": {"type": "string", "description": "The user turn."},
            },
        },
        "durationMsec": {
            "type": "number",
            "description": "Timeout covering the queue wait and the generation.",
        },
        "keepAlive": KEEP_ALIVE_SCHEMA,
        "options": OPTIONS_SCHEMA,
        "format": {
            "type": "object",
            "required": ["useGrammar", "jsonSchema"],
            "properties": {
                "useGrammar": {
                    "type": "boolean",
                    "description": "Constrain decoding with a grammar built from jsonSchema.",
                },
                "jsonSchema": {
                    "description": "JSON Schema the answer must match (always validated)."
                },
            },
        },
        "toolServer": {
            "type": "array",
            "items": {"type": "string"},
            "description": (
                "Server-side tools the model may call before it answers: names of *.tool.txt"
                ' files in the config\'s toolDir (case-insensitive, suffix optional), or ["*"]'
                " for all; an unknown name is a 400. Each call runs in its own process;"
                " result.usedTools lists the calls (docs/tools.md)."
            ),
        },
        "tool": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "spec"],
                "properties": {
                    "name": {"type": "string"},
                    "spec": _ANY,
                    "code": {
                        "type": "object",
                        "required": ["lang", "text"],
                        "properties": {"lang": {"type": "string"}, "text": {"type": "string"}},
                    },
                },
            },
            "description": "Client tools; accepted and ignored (as in the original).",
        },
    },
}

EMBEDDING_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model", "message"],
    "properties": {
        "model": {"type": "string"},
        "gpulayer": {"type": "number", "minimum": 0},
        "message": {"type": "string", "description": "Text to embed."},
        "keepAlive": KEEP_ALIVE_SCHEMA,
    },
}

SCHEMA_CHECK_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["schema"],
    "properties": {"schema": {"description": "The JSON Schema to check."}},
}

OPTIONS_CHECK_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["options"],
    "properties": {"options": {"description": "Generation options to normalise."}},
}

PROMPT_FROM_STRING_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["content"],
    "properties": {"content": {"type": "string", "description": "Text in the prompt-file format."}},
}

PROMPT_TO_STRING_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["prompts"],
    "properties": {"prompts": {"type": "array", "items": _ANY, "description": "Prompt objects."}},
}

LOG_PAGE_QUERY_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "afterId": {
            "type": "integer",
            "minimum": 0,
            "description": (
                "Absent or 0: the newest `limit` rows (the tail). Otherwise the OLDEST `limit`"
                " rows with a greater id, so a client passing the largest id it has seen walks"
                " every row. Each page is ordered newest first."
            ),
        },
        "limit": {
            "type": "integer",
            "minimum": 1,
            "description": "At most this many rows (default and cap 200).",
        },
    },
}

LOG_DATE_QUERY_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["date"],
    "properties": {
        "date": {"type": "string", "description": "Local day, YYYYMMDD."},
        "hour": {"type": "string", "description": "Local hour 00..23; absent = the whole day."},
    },
}

LOG_PAGE_CAP = 200


def check(schema: JsonSchema, value: Any, root: str = "body") -> Any:
    """Validate with coercion; a mismatch is a 400 with the original's message."""
    try:
        return validate(schema, value, root)
    except RequestValidationError as error:
        raise ApiError(400, str(error)) from error


def _without_null_options(body: Any) -> Any:
    # `null` for an option means "not given" (config.options' rule; the original rejected it).
    if isinstance(body, dict) and isinstance(body.get("options"), dict):
        body = dict(body)
        body["options"] = {
            key: value for key, value in body["options"].items() if value is not None
        }
    return body


def parse_prompt(raw: Any) -> PromptRequest:
    body: dict[str, Any] = check(PROMPT_SCHEMA, _without_null_options(raw))
    message: dict[str, Any] = body["message"]
    fmt = body.get("format")
    return PromptRequest(
        body=body,
        model=body["model"],
        gpulayer=body.get("gpulayer"),
        context_size=body.get("contextSize"),
        system=message.get("system"),
        user=message["user"],
        duration_msec=body["durationMsec"],
        options=body.get("options"),
        format=PromptFormat(bool(fmt["useGrammar"]), fmt["jsonSchema"])
        if fmt is not None
        else None,
        tool_server=body.get("toolServer"),
        keep_alive_s=keep_alive_of(body, "keepAlive"),
    )


def parse_embedding(raw: Any) -> EmbeddingRequest:
    body: dict[str, Any] = check(EMBEDDING_SCHEMA, raw)
    return EmbeddingRequest(
        model=body["model"],
        texts=[body["message"]],
        gpulayer=body.get("gpulayer"),
        keep_alive_s=keep_alive_of(body, "keepAlive"),
    )


@dataclass(frozen=True)
class LogPage:
    """``after_id`` None = the tail (no ``afterId``, or 0: the client has seen no row yet)."""

    after_id: int | None
    limit: int


def log_page_query(request: Request) -> LogPage:
    """The ``afterId``/``limit`` query of the byid routes (a FastAPI dependency)."""
    return parse_log_page(request.query_params)


def log_date_query(request: Request) -> LogDate:
    """The ``date``/``hour`` query of the bydate routes (a FastAPI dependency)."""
    return parse_log_date(request.query_params)


def parse_log_page(query: Mapping[str, str]) -> LogPage:
    """``afterId``/``limit`` must be integers (a fix: ``limit=abc`` broke the original's DB)."""
    values = check(LOG_PAGE_QUERY_SCHEMA, dict(query), "querystring")
    return LogPage(
        after_id=values.get("afterId") or None,
        limit=min(values.get("limit", LOG_PAGE_CAP), LOG_PAGE_CAP),
    )


@dataclass(frozen=True)
class LogDate:
    date: str
    hour: str | None


def parse_log_date(query: Mapping[str, str]) -> LogDate:
    values = check(LOG_DATE_QUERY_SCHEMA, dict(query), "querystring")
    return LogDate(date=values["date"], hour=values.get("hour"))
