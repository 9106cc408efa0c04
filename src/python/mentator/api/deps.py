"""What route handlers get injected, and the small request facts every log line needs.

The `Services` container lives on ``app.state`` (set once by `app.create_app`); handlers receive
it through FastAPI's dependency injection, never through a module global.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request

from mentator.service import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def request_url(request: Request) -> str:
    """Path plus query, like Fastify's ``request.url`` in the original's log lines."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def api_pipe(request: Request) -> str:
    """The log pipe of a route, e.g. ``API.POST /prompt`` (reference §3)."""
    return f"API.{request.method} {request.url.path}"


def api_message(request: Request) -> str:
    """The log message of a route, e.g. ``[from 127.0.0.1] /prompt`` (reference §3)."""
    return f"[from {client_ip(request)}] {request_url(request)}"


def json_text(value: Any) -> str:
    """Compact JSON as JavaScript's ``JSON.stringify`` writes it (logs, chat log, SSE)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
