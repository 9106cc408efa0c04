"""API keys (docs/security.md): when the settings hold any key, every request needs one of them in
``Authorization: Bearer <key>`` or ``x-api-key: <key>``, except:

* ``/health`` and ``/state/version`` — the container HEALTHCHECK and orchestrators call them;
* the web UI's pages (``GET /``, ``/chat``, ``/stat``, ``/log/core``, ``/log/chat``) and its static
  files under ``/ui/`` (plus ``/favicon.ico``): they hold no data; the pages ask the user for the
  key and send it with every API call.

A missing or wrong key is a 401 with ``WWW-Authenticate: Bearer``, in the original's envelope (or
OpenAI's error shape, code ``invalid_api_key``, under ``/v1``). Keys are compared in constant time
(`hmac.compare_digest`, against every configured key) and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mentator.api.errors import ApiError, answer_for
from mentator.logging_protocol import LoggerProtocol

OPEN_PATHS = frozenset({"/health", "/state/version", "/favicon.ico"})
UI_PAGES = frozenset({"/", "/chat", "/stat", "/log/core", "/log/chat"})
UI_STATIC_PREFIX = "/ui/"
READ_METHODS = frozenset({"GET", "HEAD"})

MISSING_KEY = (
    "API key required: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    " (the keys are the config's apiKeys and the MENTATOR_API_KEYS environment variable)"
)
WRONG_KEY = "API key not accepted: check the key sent in 'Authorization: Bearer' or 'x-api-key'"


def needs_key(method: str, path: str) -> bool:
    """Whether a request must carry a key (when keys are configured at all)."""
    if path in OPEN_PATHS:
        return False
    if method.upper() in READ_METHODS and (
        path in UI_PAGES or path.rstrip("/") in UI_PAGES or path.startswith(UI_STATIC_PREFIX)
    ):
        return False
    return True


def presented_key(headers: Headers) -> str | None:
    """The key the request carries: ``Authorization: Bearer <key>``, else ``x-api-key``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def key_accepted(presented: str, keys: Sequence[str]) -> bool:
    """Constant-time comparison against every key (no early exit that would tell which)."""
    given = presented.encode("utf-8")
    accepted = False
    for key in keys:
        accepted |= hmac.compare_digest(given, key.encode("utf-8"))
    return accepted


class ApiKeyMiddleware:
    """Answers 401 before any route runs when a needed key is missing or wrong."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], logger: LoggerProtocol) -> None:
        self.app = app
        self.keys = tuple(keys)
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        if not needs_key(method, path):
            await self.app(scope, receive, send)
            return
        presented = presented_key(Headers(scope=scope))
        if presented is not None and key_accepted(presented, self.keys):
            await self.app(scope, receive, send)
            return
        message = MISSING_KEY if presented is None else WRONG_KEY
        # Logged without the key: what was asked and why it was refused.
        self.logger.error("API", f"401 for {method} {path}: {message.split(':')[0]}")
        error = ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})
        await answer_for(path, error)(scope, receive, send)
