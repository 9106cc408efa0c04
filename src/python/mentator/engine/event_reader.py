"""The server-sent events of one POST to our own llama-server child, read at little CPU cost.

Every completion of the engine client is read here: streams (a caller's `stream: true`, and
whole answers under `cancelOnDisconnect: true`; why: `client.py`), paid once per generated
token, and one-piece answers. Through httpx a token cost about 0.36 ms of the service's CPU
(py-spy, SmolLM2 on this 2-core machine: anyio, httpcore and h11 layers per read) — CPU the
engine's own threads then lack.
Here the event loop hands the bytes to an `asyncio.Protocol`, httptools (llhttp, the parser
uvicorn uses) removes the HTTP framing in C, and the reader wakes once per read, not per layer.

The request is fixed in shape (a JSON POST on loopback, `Connection: close`), so writing it needs
no HTTP library; one connection per request keeps `client.py`'s retry rule: a refused connection
proves the child never saw the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools

from mentator.engine.errors import EngineConnectionError, EngineRequestError

_EVENT_END = b"\n\n"


class _EventProtocol(asyncio.Protocol):
    """Collects a response's status, its body (when it is an error) and its SSE `data:` lines."""

    def __init__(self, request: bytes, *, whole: bool = False, gathered: bool = False) -> None:
        self._request = request
        self._gathered = gathered
        # whole: the answer is one JSON document (a request with "stream": false), handed on
        # as a single payload when it is complete.
        self._whole = whole
        self._body = bytearray()
        self._parser = httptools.HttpResponseParser(self)
        self._pending = b""
        self.status = 0
        self.error_body = bytearray()
        self.payloads: deque[bytes] = deque()
        self.finished = False  # the whole response was read
        self.lost: Exception | None = None  # the connection ended before that
        self._waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        if self._gathered:
            _hold_reads(transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.lost = EngineConnectionError(f"engine sent an unreadable response: {error}")
            if self.transport is not None:
                self.transport.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished and self.lost is None:
            self.lost = EngineConnectionError(
                f"engine connection lost during completion: {exc or 'closed by the engine'}"
            )
        self._wake()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status >= 400:
            self.error_body += body
            return
        if self._whole:
            self._body += body
            return
        data = self._pending + body
        end = data.rfind(_EVENT_END)
        if end < 0:
            self._pending = data
            return
        self._pending = data[end + 2 :]
        for event in data[:end].split(_EVENT_END):
            for line in event.split(b"\n"):
                # Only `data:` lines matter: blank separators, ": ping" comments, "event:" lines
                # carry nothing for us.
                if line.startswith(b"data:"):
                    self.payloads.append(line[5:].strip())

    def on_message_complete(self) -> None:
        if self._whole and self.status < 400:
            self.payloads.append(bytes(self._body))
        self.finished = True

    # the reader's side
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self) -> None:
        """Until the next read (or the end) arrives."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


# A gathered answer's bytes wait in the kernel until this many are there (or the answer ended).
GATHER_BYTES = 64 * 1024


def _hold_reads(transport: asyncio.BaseTransport) -> None:
    """Wake the reader only once `GATHER_BYTES` arrived or the connection ended (SO_RCVLOWAT:
    epoll reports the socket readable then, and at the end of the stream), instead of at every
    token llama-server writes. Per token that was a wake-up of the event loop and a read in the
    service on a machine whose cores the engine's threads need. Where the option is missing,
    the reads simply come per token."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, GATHER_BYTES)


def _request_bytes(host: str, port: int, path: str, body: dict[str, Any]) -> bytes:
    content = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(content)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + content


def error_message(status: int, body: bytes) -> str:
    """llama-server's message for an error answer (`{"error": {"message": …}}`), else its text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return json.dumps(data)[:500]


async def post_events(
    host: str,
    port: int,
    path: str,
    body: dict[str, Any],
    *,
    connect_timeout_s: float,
    whole: bool = False,
    gathered: bool = False,
) -> AsyncIterator[bytes]:
    """POST ``body`` as JSON and yield each event's `data:` payload (bytes, stripped); with
    ``whole`` (a one-piece answer, ``"stream": false``) the one JSON body instead. ``gathered``:
    the caller wants the answer whole, not token by token, so the events may come in batches
    (`_hold_reads`).

    Raises `EngineConnectionError` (``unsent`` when the connection was refused or timed out
    before it was made), or `EngineRequestError` for an answer of status 400 or more. Leaving
    the iteration early closes the connection, which stops the generation."""
    loop = asyncio.get_running_loop()
    protocol = _EventProtocol(
        _request_bytes(host, port, path, body), whole=whole, gathered=gathered
    )
    try:
        # asyncio.timeout, not wait_for: no task of its own per request.
        async with asyncio.timeout(connect_timeout_s):
            await loop.create_connection(lambda: protocol, host, port)
    except (OSError, TimeoutError) as error:
        detail = str(error) or type(error).__name__
        raise EngineConnectionError(
            f"engine connection lost during completion: {detail}", unsent=True
        ) from error
    try:
        while True:
            while protocol.payloads:
                yield protocol.payloads.popleft()
            if protocol.lost is not None:
                raise protocol.lost
            if protocol.finished:
                if protocol.status >= 400:
                    raise EngineRequestError(
                        error_message(protocol.status, bytes(protocol.error_body)),
                        status=protocol.status,
                    )
                return
            await protocol.more()
    finally:
        if protocol.transport is not None:
            protocol.transport.close()
