"""Drive an ASGI app as a client that sends its request and then goes away, to test that work
is cancelled when the client disconnects (TestClient cannot disconnect mid-request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any


async def post_then_disconnect(
    app: Any, path: str, body: object, *, after_s: float = 0.1, timeout_s: float = 3.0
) -> list[dict[str, Any]]:
    """POST `body` as JSON to `path`, disconnect `after_s` later; return what the app sent."""
    payload = json.dumps(body).encode()
    messages = [{"type": "http.request", "body": payload, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(after_s)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("10.0.0.9", 5000),
        "server": ("test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=timeout_s)
    return sent
