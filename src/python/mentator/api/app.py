"""`create_app(services)`: the FastAPI application of the service.

Error answers, all in one place:
* `ApiError` raised by body reading / request validation (and by the simple routes) → its status
  with the ``{"duration":…,"error":…}`` envelope; logged like the original's global handler
  (pipe ``API``, ``Error handler for <METHOD> <url>``, extra = JSON with message and status);
* no route → 404 ``Route GET:/nope not found``; wrong method → 405 ``Method DELETE not allowed
  on /prompt (allowed: POST)`` with an ``Allow`` header (the original answered 404 in Fastify's own
  shape; port.md: same envelope everywhere);
* anything unexpected → 500 with the exception text, logged with its traceback;
* under ``/v1/`` the same cases answer OpenAI's ``{"error":{…}}`` shape.
The body size (1 MiB → 413) and content type (→ 415) rules live in `body.read_body`.
"""

from __future__ import annotations

import traceback
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mentator.api import (
    check,
    docs,
    embedding,
    health,
    helper,
    logs,
    metrics,
    openai,
    prompt,
    state,
)
from mentator.api.deps import json_text, request_url
from mentator.api.errors import ApiError, error_body, error_response
from mentator.api.metrics import ApiMetrics, MetricsMiddleware
from mentator.service import Services
from mentator.version import VERSION


def _is_openai(path: str) -> bool:
    return path.startswith(openai.OPENAI_PREFIX)


def _answer(request: Request, error: ApiError) -> Response:
    if _is_openai(request.url.path):
        return openai.openai_error_response(error)
    return error_response(error)


def _log_handled_error(request: Request, error: ApiError) -> None:
    services: Services = request.app.state.services
    extra = json_text({"message": error.message, "statusCode": error.status})
    services.logger.error(
        "API", f"Error handler for {request.method} {request_url(request)}", extra
    )


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    _log_handled_error(request, exc)
    return _answer(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Route {request.method}:{request.url.path} not found"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"Method {request.method} not allowed on {request.url.path} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    return _answer(request, ApiError(exc.status_code, message, headers=dict(exc.headers or {})))


class InternalErrorMiddleware:
    """Turns an unexpected exception into a 500 envelope (when nothing was sent yet) and logs it,
    instead of Starlette's plain-text "Internal Server Error"."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

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
            self.services.logger.error(
                "API",
                f"unexpected error on {scope.get('method', '')} {path}",
                "".join(traceback.format_exception(exc)),
            )
            if started:
                raise
            if _is_openai(path):
                response: Response = JSONResponse(
                    openai.openai_error_body(500, text), status_code=500
                )
            else:
                response = JSONResponse(error_body(text), status_code=500)
            await response(scope, receive, send)


def create_app(services: Services) -> FastAPI:
    """The application over ``services`` (tests pass fakes; the service passes the real ones)."""
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
    app.state.services = services
    app.state.metrics = ApiMetrics()
    handlers: dict[Any, Any] = {ApiError: _on_api_error, StarletteHTTPException: _on_http_error}
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    for router in (
        prompt.router,
        embedding.router,
        check.router,
        helper.router,
        state.router,
        logs.router,
        openai.router,
        metrics.router,
        health.router,
    ):
        app.include_router(router)
    docs.mount_docs(app)
    app.add_middleware(InternalErrorMiddleware, services=services)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
