"""``/doc``: Swagger UI and the OpenAPI 3 document, served without any CDN.

The Swagger UI files come from the ``swagger_ui_bundle`` package and are served by the app under
``/doc/static/`` — the container is often run air-gapped, so the page must work offline.
``/doc/json`` (and ``/openapi.json`` for tools that expect it) answer the OpenAPI document,
``/doc/yaml`` the same in YAML. FastAPI's own ``/docs``, ``/redoc`` and ``/openapi.json`` routes
are disabled in `app.create_app`; ``/docs`` redirects here.

The bundled Swagger UI (4.x) renders OpenAPI 3.0, so the document declares 3.0.3 and the
hand-written request schemas stay within 3.0.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from mentator.api.auth import needs_key

TITLE = "Mentator LLM Service"
DESCRIPTION = (
    "A local LLM behind an HTTP API. `POST /prompt` runs one chat turn on a GGUF model "
    "(llama.cpp's llama-server as a supervised child process) and can force the answer into JSON "
    "that matches a JSON Schema: the schema becomes a decoding grammar (`format.useGrammar`) and "
    "the answer is validated against it. `POST /embedding` returns embedding vectors. "
    "`/check/*` and `/helper/*` help to write schemas, options and prompt files; `/state` and "
    "`/log/*` report what the service does. OpenAI-compatible clients can use `/v1/*`; "
    "`/metrics` (Prometheus) and `/health` serve monitoring."
)
OPENAPI_VERSION = "3.0.3"

TAGS: list[dict[str, str]] = [
    {"name": "main", "description": "Completion and embedding."},
    {"name": "validation", "description": "Check JSON Schemas and generation options."},
    {"name": "helper", "description": "Examples and the prompt-file format."},
    {"name": "state", "description": "Runtime state, version and models."},
    {"name": "log", "description": "Core log and chat log."},
    {"name": "openai", "description": "OpenAI-compatible API."},
    {"name": "monitoring", "description": "Prometheus metrics and health."},
    {"name": "ui", "description": "The web UI's pages (HTML)."},
]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="/doc/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/doc/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/doc/static/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="/doc/static/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "/doc/json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      }});
    }};
  </script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "duration": {
            "type": "object",
            "properties": {"promptMsec": {"type": "integer"}, "queueMsec": {"type": "integer"}},
        },
        "error": {"type": "string"},
    },
}
_OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
_ENGINE_TAGS = frozenset({"main", "openai"})


def _error_response(path: str, description: str) -> dict[str, Any]:
    schema = _OPENAI_ERROR_SCHEMA if path.startswith("/v1/") else _ENVELOPE_SCHEMA
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def declare_error_responses(document: dict[str, Any], keys_required: bool) -> None:
    """Declare, on every operation, the error statuses the shared machinery can answer — so the
    document lists every status a client can get (a fuzzer checks it): 400 for an operation
    with a body or query parameters (validation), 413/415 for a body (`body.read_body`), 500/503
    for engine-backed operations (engine failure, queue full or starting), 401 when API keys
    are required (`auth`). Explicit declarations of a route are kept."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            declared: dict[str, Any] = operation["responses"]
            wanted: dict[str, str] = {}
            if operation.get("requestBody") or operation.get("parameters"):
                wanted["400"] = "Invalid request (the message says what and where)"
            if operation.get("requestBody"):
                wanted["413"] = "Request body larger than 1 MiB"
                wanted["415"] = "Content type other than application/json or text/plain"
            if _ENGINE_TAGS & set(operation.get("tags", ())):
                wanted["500"] = "Engine error"
                wanted["503"] = "Queue full or service starting"
            if keys_required and needs_key(method.upper(), path):
                wanted["401"] = "API key missing or not accepted"
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            for status, description in wanted.items():
                declared.setdefault(status, _error_response(path, description))
    if keys_required:
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(
            {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
        )


def declare_event_streams(document: dict[str, Any]) -> None:
    """An operation whose JSON body has a boolean ``stream`` flag (the ``/v1`` completions)
    answers Server-Sent Events when it is true: its 200 lists ``text/event-stream`` beside JSON.
    Keyed by the body's schema, so a new streamed route is documented without a list here."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            stream = body.get("schema", {}).get("properties", {}).get("stream", {})
            answer = operation.get("responses", {}).get("200")
            if stream.get("type") != "boolean" or answer is None:
                continue
            answer.setdefault("content", {})["text/event-stream"] = {
                "schema": {
                    "type": "string",
                    "description": "With `stream: true`: `data: <JSON chunk>` events, then "
                    "`data: [DONE]`.",
                }
            }


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (FastAPI caches it after the first build), with the shared
    error answers and the event streams declared (`declare_error_responses`,
    `declare_event_streams`, once)."""
    document = app.openapi()
    if not getattr(app.state, "errors_declared", False):
        keys = bool(app.state.context.settings.api_keys)
        declare_error_responses(document, keys)
        declare_event_streams(document)
        app.state.errors_declared = True
    return document


@router.get("/doc")
async def swagger_page() -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=TITLE))


@router.get("/doc/json")
@router.get("/openapi.json")
async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(request.app))


@router.get("/doc/yaml")
async def openapi_yaml(request: Request) -> Response:
    text = yaml.safe_dump(openapi_document(request.app), sort_keys=False, allow_unicode=True)
    return Response(text, media_type="application/x-yaml")


@router.get("/docs")
async def docs_alias() -> RedirectResponse:
    return RedirectResponse("/doc")


def mount_docs(app: FastAPI) -> None:
    """Add the /doc routes and the local Swagger UI files to ``app``."""
    app.include_router(router)
    app.mount("/doc/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
