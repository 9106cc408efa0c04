"""`EngineConnectionError.unsent` over real sockets: True only when the engine cannot have seen
the request (the connection was refused), so that only such a request is run again on a fresh
child; a connection that was accepted and then dropped may have done work, and is not retried."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from mentator.engine.client import EngineClient
from mentator.engine.errors import EngineConnectionError
from mentator.engine.ports import CompletionRequest

MESSAGES = [{"role": "user", "content": "hi"}]

Call = Callable[[EngineClient], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "embed": lambda client: client.embed("hello"),
    "complete": lambda client: client.complete(CompletionRequest(MESSAGES)),
}


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port where nothing listens: bound (so no other program takes it while the
    test runs) but never listening, so every connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield int(bound.getsockname()[1])


async def _call_expecting_failure(base_url: str, call: Call) -> EngineConnectionError:
    client = EngineClient(base_url)
    try:
        with pytest.raises(EngineConnectionError) as failed:
            await asyncio.wait_for(call(client), 10)
    finally:
        await client.aclose()
    return failed.value


@pytest.mark.parametrize("what", list(CALLS))
def test_a_refused_connection_is_marked_never_sent(refusing_port: int, what: str) -> None:
    error = asyncio.run(_call_expecting_failure(f"http://127.0.0.1:{refusing_port}", CALLS[what]))
    assert error.unsent is True, error.message


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """The whole HTTP request (headers and a Content-Length body): the engine has seen it."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + await reader.readexactly(length)


async def _dropping_server_call(call: Call, reset: bool) -> tuple[EngineConnectionError, bytes]:
    """Run ``call`` against a server that accepts, reads the request and hangs up without an
    answer (a clean close, or a reset as when the engine's process is killed)."""
    seen: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        error = await _call_expecting_failure(f"http://127.0.0.1:{port}", call)
    finally:
        server.close()
        await server.wait_closed()
    assert len(seen) == 1, "the server did not receive the request"
    return error, seen[0]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("what", list(CALLS))
def test_a_connection_dropped_after_the_request_is_not_never_sent(what: str, reset: bool) -> None:
    error, request = asyncio.run(_dropping_server_call(CALLS[what], reset))
    assert request.startswith(b"POST /")
    assert error.unsent is False, error.message
