"""`create_app(context)`: the FastAPI application of the service — the route table, and every
error answer in one place.

* `ApiError` raised by body reading / request validation → its status; logged like the
  original's global handler (pipe ``API``, ``Error handler for <METHOD> <url>``, extra = JSON with
  message and status);
* a use-case's `InferenceError` (already logged by the use-case) → its status;
* no route → 404 ``Route GET:/nope not found``; wrong method → 405 ``Method DELETE not allowed
  on /prompt (allowed: POST)`` with an ``Allow`` header (the original answered 404 in Fastify's own
  shape; port.md: same envelope everywhere);
* anything unexpected → 500 with the exception text, logged with its traceback.
Each answer has the original's ``{"duration":…,"error":…}`` envelope, or OpenAI's
``{"error":{…}}`` under ``/v1/`` (`errors.answer_for`). The body size (1 MiB → 413) and content
type (→ 415) rules live in `body.read_body`.

Adding a route: one module in `routes/` with its ``router``, and one line in `ROUTERS`.
"""

from __future__ import annotations

import traceback
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mentator.api.auth import ApiKeyMiddleware
from mentator.api.deps import build_use_cases, request_url
from mentator.api.errors import ApiError, answer_for, error_body, is_openai, openai_error_body
from mentator.api.metrics import ApiMetrics, MetricsMiddleware
from mentator.api.routes import (
    activity,
    check,
    docs,
    embedding,
    health,
    helper,
    logs,
    metrics,
    openai,
    prompt,
    residency,
    state,
    text_completions,
    ui,
)
from mentator.context import ServiceContext
from mentator.inference.errors import InferenceError
from mentator.jsontext import json_text
from mentator.logging_protocol import LoggerProtocol
from mentator.version import VERSION

# The route table: one router per family of routes (`routes/<family>.py`).
ROUTERS: tuple[APIRouter, ...] = (
    prompt.router,
    embedding.router,
    check.router,
    helper.router,
    state.router,
    residency.router,
    activity.router,
    logs.router,
    openai.router,
    text_completions.router,
    metrics.router,
    health.router,
    ui.router,
)


async def _on_error(request: Request, exc: Exception) -> Response:
    """The one handler of expected errors (see the module docstring)."""
    if isinstance(exc, ApiError):
        logger: LoggerProtocol = request.app.state.context.logger
        extra = json_text({"message": exc.message, "statusCode": exc.status})
        logger.error("API", f"Error handler for {request.method} {request_url(request)}", extra)
    assert isinstance(exc, ApiError | InferenceError)
    return answer_for(request.url.path, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Route {request.method}:{request.url.path} not found"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"Method {request.method} not allowed on {request.url.path} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    error = ApiError(exc.status_code, message, headers=dict(exc.headers or {}))
    return answer_for(request.url.path, error)


class InternalErrorMiddleware:
    """Turns an unexpected exception into a 500 envelope (when nothing was sent yet) and logs it,
    instead of Starlette's plain-text "Internal Server Error"."""

    def __init__(self, app: ASGIApp, logger: LoggerProtocol) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            path = scope.get("path", "")
            text = f"{type(exc).__name__}: {exc}"
            self.logger.error(
                "API",
                f"unexpected error on {scope.get('method', '')} {path}",
                "".join(traceback.format_exception(exc)),
            )
            if started:
                raise
            body = openai_error_body(500, text) if is_openai(path) else error_body(text)
            await JSONResponse(body, status_code=500)(scope, receive, send)


def create_app(context: ServiceContext) -> FastAPI:
    """The application over ``context`` (tests pass fakes; the server passes the real parts)."""
    app = FastAPI(
        title=docs.TITLE,
        description=docs.DESCRIPTION,
        version=VERSION,
        openapi_tags=docs.TAGS,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        servers=[{"url": "/"}],
    )
    # Swagger UI 4 (the bundled one) renders OpenAPI 3.0 documents.
    app.openapi_version = docs.OPENAPI_VERSION
    app.state.context = context
    app.state.metrics = ApiMetrics(context.clock_ms)
    app.state.use_cases = build_use_cases(context, app.state.metrics)
    handlers: dict[Any, Any] = {
        ApiError: _on_error,
        InferenceError: _on_error,
        StarletteHTTPException: _on_http_error,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    for router in ROUTERS:
        app.include_router(router)
    docs.mount_docs(app)
    # Innermost first: the key check runs inside the 500 guard and the metrics.
    app.add_middleware(ApiKeyMiddleware, keys=context.settings.api_keys, logger=context.logger)
    app.add_middleware(InternalErrorMiddleware, logger=context.logger)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
