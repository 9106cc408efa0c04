"""EngineClient: request mapping, response parsing and error typing (httpx mock transport)."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mentator.engine import event_reader
from mentator.engine.client import EngineClient, logit_bias, sampling_params
from mentator.engine.errors import EngineConnectionError, EngineError, EngineRequestError
from mentator.engine.ports import CompletionRequest

JSON_DEFAULTS: dict[str, Any] = {
    "temperature": 0,
    "topP": 0.1,
    "topK": 10,
    "minP": 0,
    "maxTokens": 4096,
    "repeatPenalty": 1,
    "repeatPenaltyNum": 0,
    "presencePenalty": 0,
    "frequencyPenalty": 0,
    "mirostat": 2,
    "mirostatTau": 5,
    "mirostatEta": 0.1,
    "penalizeNewline": False,
    "stopSequences": ["###"],
    "trimWhitespace": True,
    "tokenBias": {"Hello": 2.5, "42": -1, "never": False},
    "evaluationPriority": 5,
    "contextShiftSize": 0,
    "disableContextShift": False,
    "seed": 7,
}


def test_sampling_params_map_every_supported_option() -> None:
    assert sampling_params(JSON_DEFAULTS) == {
        "temperature": 0,
        "top_p": 0.1,
        "top_k": 10,
        "min_p": 0,
        "max_tokens": 4096,
        "repeat_penalty": 1,
        "repeat_last_n": 0,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "mirostat": 2,
        "mirostat_tau": 5,
        "mirostat_eta": 0.1,
        "seed": 7,
        "stop": ["###"],
        "logit_bias": [["Hello", 2.5], ["42", -1], ["never", False]],
    }


def test_empty_stops_and_bias_are_not_sent() -> None:
    assert sampling_params({"stopSequences": [], "tokenBias": {}}) == {}


def test_logit_bias_drops_values_the_engine_cannot_take() -> None:
    assert logit_bias({"a": float("-inf"), "b": float("nan"), "c": "x", "d": True, "e": 1}) == [
        ["a", False],
        ["e", 1],
    ]


Handler = Callable[[httpx.Request], httpx.Response]


class _Engine(http.server.BaseHTTPRequestHandler):
    """A stand-in llama-server on a real loopback socket: answers with ``server.handler``'s
    response, chunked as llama-server's are, in pieces of 7 bytes (so events and lines are cut
    at every place a real network read can cut them)."""

    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        content = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = httpx.Request(
            self.command, f"http://engine{self.path}", content=content, headers=dict(self.headers)
        )
        try:
            response = self.server.handler(request)  # type: ignore[attr-defined]
        except httpx.RemoteProtocolError:
            self.close_connection = True  # disconnect without an answer
            return
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        body = response.content
        for start in range(0, len(body), 7):
            piece = body[start : start + 7]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def client_with(handler: Handler, *, stream_whole: bool = True) -> EngineClient:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    server.handler = handler  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return EngineClient(f"http://127.0.0.1:{server.server_address[1]}", stream_whole=stream_whole)


def test_complete_sends_messages_grammar_and_reads_the_answer() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        seen.append(json.loads(request.content))
        # A whole answer is read as a stream (llama-server then notices a caller that left).
        events = [
            {"choices": [{"delta": {"reasoning_content": "hmm"}, "finish_reason": None}]},
            {"choices": [{"delta": {"content": '{"a"'}, "finish_reason": None}]},
            {"choices": [{"delta": {"content": ":1}"}, "finish_reason": "length"}]},
            {
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4},
                "timings": {"predicted_ms": 3.5},
            },
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})

    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    result = asyncio.run(
        client_with(handler).complete(
            CompletionRequest(messages, {"temperature": 0.5}, grammar='root ::= "x"')
        )
    )
    assert result.text == '{"a":1}' and result.reasoning == "hmm"
    assert result.finish_reason == "length"
    assert (result.prompt_tokens, result.completion_tokens) == (11, 4)
    assert result.timings == {"predicted_ms": 3.5}
    assert seen == [
        {
            "messages": messages,
            "temperature": 0.5,
            "n_probs": 0,
            "cache_prompt": True,
            "stream": True,
            "grammar": 'root ::= "x"',
            "stream_options": {"include_usage": True},
        }
    ]


def test_complete_in_one_piece_when_not_streaming_whole_answers() -> None:
    """cancelOnDisconnect false: the answer is asked with "stream": false and read whole."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "message": {"content": '{"a":1}', "reasoning_content": "hmm"},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4},
                "timings": {"predicted_ms": 3.5},
            },
        )

    client = client_with(handler, stream_whole=False)
    result = asyncio.run(client.complete(CompletionRequest([{"role": "user", "content": "U"}])))
    assert result.text == '{"a":1}' and result.reasoning == "hmm"
    assert result.finish_reason == "length"
    assert (result.prompt_tokens, result.completion_tokens) == (11, 4)
    assert result.timings == {"predicted_ms": 3.5}
    assert seen[0]["stream"] is False and "stream_options" not in seen[0]


def test_engine_error_status_and_message_are_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "error": {"code": 400, "message": "the request exceeds the available context size"}
            },
        )

    with pytest.raises(EngineRequestError) as caught:
        asyncio.run(
            client_with(handler).complete(CompletionRequest([{"role": "user", "content": "x"}]))
        )
    assert caught.value.status == 400
    assert str(caught.value) == "the request exceeds the available context size"


def test_connection_failure_is_an_engine_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    with pytest.raises(EngineConnectionError, match="connection lost during completion"):
        asyncio.run(
            client_with(handler).complete(CompletionRequest([{"role": "user", "content": "x"}]))
        )


def test_stream_yields_deltas_until_done() -> None:
    events = [
        {"choices": [{"delta": {"reasoning_content": "th"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": None}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 2}},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ": ping\n\ndata: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})

    async def collect() -> list[Any]:
        return [
            d
            async for d in client_with(handler).stream(
                CompletionRequest([{"role": "user", "content": "x"}])
            )
        ]

    deltas = asyncio.run(collect())
    assert "".join(d.text for d in deltas) == "Hello"
    assert deltas[0].reasoning == "th"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage == {"completion_tokens": 2}


def test_stream_error_event_raises() -> None:
    body = 'data: {"error": {"code": 500, "message": "decode failed"}}\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body)

    async def collect() -> None:
        async for _ in client_with(handler).stream(
            CompletionRequest([{"role": "user", "content": "x"}])
        ):
            pass

    with pytest.raises(EngineRequestError, match="decode failed") as caught:
        asyncio.run(collect())
    assert caught.value.status == 500


@pytest.mark.parametrize(
    ("answer", "vector"),
    [
        ([{"index": 0, "embedding": [[0.5, 1.5]]}], [0.5, 1.5]),  # pooled
        ([{"index": 0, "embedding": [[1, 2], [3, 4], [5, 6]]}], [5.0, 6.0]),  # per token: last
        ({"embedding": [7, 8]}, [7.0, 8.0]),  # a flat vector
    ],
)
def test_embed_takes_the_pooled_or_last_token_vector(answer: Any, vector: list[float]) -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    assert asyncio.run(client_with(handler).embed("hello")) == vector
    assert sent == [{"content": "hello", "embd_normalize": -1}]


def test_embed_of_empty_text_is_empty_without_a_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    assert asyncio.run(client_with(handler).embed("")) == []


def test_unexpected_embedding_shape_is_an_engine_error() -> None:
    client = client_with(lambda request: httpx.Response(200, json={"nope": 1}))
    with pytest.raises(EngineError, match="unexpected embedding"):
        asyncio.run(client.embed("x"))


# llama-server's /slots (Debian build 11669), one slot working and one never used.
SLOTS = [
    {
        "id": 0,
        "n_ctx": 1024,
        "is_processing": True,
        "n_prompt_tokens": 70,
        "next_token": [{"n_decoded": 33}],
        "params": {"temperature": 0.8},
    },
    {"id": 1, "n_ctx": 1024, "speculative": False, "is_processing": False},
]


def test_kv_cache_sums_the_slots_report() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/slots")
        return httpx.Response(200, json=SLOTS)

    report = asyncio.run(client_with(handler).kv_cache("m.gguf"))
    assert report is not None
    assert (report.model, report.used_tokens, report.capacity_tokens) == ("m.gguf", 70, 2048)
    assert (report.slots, report.busy_slots) == (2, 1)
    assert report.usage_ratio == 70 / 2048


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(501, json={"error": {"message": "This server does not support slots"}}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"slots": "nope"}),
    ],
)
def test_kv_cache_is_none_when_the_engine_does_not_say(answer: httpx.Response) -> None:
    assert asyncio.run(client_with(lambda request: answer).kv_cache("m.gguf")) is None


def test_kv_cache_is_none_when_the_engine_does_not_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert asyncio.run(client_with(handler).kv_cache("m.gguf")) is None


def _slow_stream_engine(events: int, pause_s: float) -> str:
    """A raw engine that answers each request with ``events`` stream events, one per write with
    a pause between them (as llama-server writes tokens), then closes: its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            connection, _ = listener.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Connection: close\r\n\r\n"
                )
                for _ in range(events):
                    chunk = {"choices": [{"delta": {"content": "ab"}, "finish_reason": None}]}
                    connection.sendall(f"data: {json.dumps(chunk)}\n\n".encode())
                    time.sleep(pause_s)
                connection.sendall(b"data: [DONE]\n\n")

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_whole_answer_is_read_in_a_few_wakes_a_stream_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Per token the service would wake and read, on cores the engine computes on; a whole
    answer's bytes wait in the kernel until its end (SO_RCVLOWAT), a stream's come per event."""
    reads = 0
    original = event_reader._EventProtocol.data_received

    def counted(self: Any, data: bytes) -> None:
        nonlocal reads
        reads += 1
        original(self, data)

    monkeypatch.setattr(event_reader._EventProtocol, "data_received", counted)
    client = EngineClient(_slow_stream_engine(events=30, pause_s=0.01))
    request = CompletionRequest([{"role": "user", "content": "x"}])

    whole = asyncio.run(client.complete(request))
    whole_reads, reads = reads, 0

    async def streamed() -> str:
        return "".join([delta.text async for delta in client.stream(request)])

    assert whole.text == asyncio.run(streamed()) == "ab" * 30
    assert whole_reads <= 3
    assert reads >= 20
