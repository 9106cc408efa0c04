"""HTTP client of one llama-server child: completions (whole or streamed) and embeddings.

A chat `CompletionRequest` goes to `/v1/chat/completions` with `messages`, so llama-server applies
the model's own chat template (Jinja) and separates reasoning ("thinking") into
`reasoning_content`; a text one (``prompt`` set) to `/v1/completions`, as given. Our option
names (config `defaultOptions`, reference §2.3) are mapped to llama-server's sampling fields here,
in one place. Cancelling the awaiting task closes the HTTP connection, and llama-server stops
generating for a closed connection. It notices that at a stream's next token, but checks a
one-piece answer's connection only after a second in which no result for any request came,
which other requests' tokens (or /slots and /metrics polls) can put off until the end
(llama.cpp #9273, #24496). Whole answers (`complete`) are asked in one piece by default: a
stream costs llama-server itself 2-3 % of its tokens/s on 2 CPU-bound cores (its HTTP thread
wakes and writes per token beside the compute threads; measured on one llama-server, streamed
and whole requests alternating), and the service 2-4 % in all (README Performance). Config
``cancelOnDisconnect: true`` (``stream_whole=True``) reads them as streams instead, gathered
(`event_reader`: the kernel holds the events until the end, so no wake-up per token), for a stop
at the next token whatever else the engine does.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from mentator.engine.errors import EngineConnectionError, EngineError, EngineRequestError
from mentator.engine.event_reader import error_message, post_events
from mentator.engine.ports import (
    CompletionDelta,
    CompletionRequest,
    CompletionResult,
    KvCacheReport,
)

# Our option name → llama-server's request field (same meaning, same unit).
_DIRECT_OPTIONS: dict[str, str] = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "minP": "min_p",
    "maxTokens": "max_tokens",
    "repeatPenalty": "repeat_penalty",
    "repeatPenaltyNum": "repeat_last_n",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostatTau": "mirostat_tau",
    "mirostatEta": "mirostat_eta",
    "seed": "seed",
    # Not request options: set under a grammar by `inference.completion.constrained_options`.
    "dryMultiplier": "dry_multiplier",
    "dryBase": "dry_base",
    "dryAllowedLength": "dry_allowed_length",
    "dryPenaltyLastN": "dry_penalty_last_n",
}

# Options the engine has no per-request field for; the API layer documents them.
# penalizeNewline: llama.cpp removed `penalize_nl` (its sampler has no per-token exemption from
# the repeat penalties), so it is accepted and has no effect — a documented difference
# (docs/hardening.md); trimWhitespace: applied by the caller to the text
# (`inference.completion.answer_text`); evaluationPriority: a queue hint;
# contextShiftSize/disableContextShift: llama-server's context shift is a process flag (off),
# not a request field.
IGNORED_OPTIONS: frozenset[str] = frozenset(
    {
        "penalizeNewline",
        "trimWhitespace",
        "evaluationPriority",
        "contextShiftSize",
        "disableContextShift",
    }
)


def sampling_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """llama-server request fields for our options (absent options are not sent)."""
    params: dict[str, Any] = {}
    for ours, theirs in _DIRECT_OPTIONS.items():
        value = options.get(ours)
        if value is not None:
            params[theirs] = value
    stops = options.get("stopSequences")
    if stops:
        params["stop"] = list(stops)
    bias = options.get("tokenBias")
    if isinstance(bias, Mapping) and bias:
        params["logit_bias"] = logit_bias(bias)
    return params


def logit_bias(token_bias: Mapping[str, Any]) -> list[list[Any]]:
    """tokenBias {"text": bias} → llama-server's `[["text", bias], ...]`.

    The pair form makes llama-server tokenize every key as TEXT (in the object form a key like
    "42" would be read as a token id). A bias of `false` (or -Infinity) bans the text's tokens.
    """
    pairs: list[list[Any]] = []
    for text, value in token_bias.items():
        if value is False or (isinstance(value, (int, float)) and math.isinf(value) and value < 0):
            pairs.append([str(text), False])
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            pairs.append([str(text), value])
    return pairs


def _error_message(response: httpx.Response) -> str:
    return error_message(response.status_code, response.content)


def _connection_error(error: httpx.HTTPError, what: str) -> EngineConnectionError:
    if isinstance(error, httpx.TimeoutException):
        return EngineConnectionError(f"engine {what} timed out ({type(error).__name__})")
    detail = str(error) or type(error).__name__
    # A refused connection means the child never saw the request (it died before it came).
    unsent = isinstance(error, httpx.ConnectError)
    return EngineConnectionError(f"engine connection lost during {what}: {detail}", unsent=unsent)


class EngineClient:
    """Talks to one child at `base_url`. The httpx client is owned unless one is injected."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        connect_timeout_s: float = 5.0,
        stream_whole: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # True: `complete` reads a stream (a caller who leaves stops it at the next token);
        # False: one piece (faster; stopped about a second later, when nothing else streams).
        self._stream_whole = stream_whole
        address = urlsplit(self.base_url)
        self._host, self._port = address.hostname or "127.0.0.1", address.port or 80
        self._connect_timeout_s = connect_timeout_s
        self._owns_http = http is None
        # No read timeout: a generation is bounded by the caller (durationMsec), whose
        # cancellation closes the connection and so stops llama-server.
        # No kept-alive connections: each request opens its own (loopback: ~0.1 ms). Then a
        # refused connection proves the child never saw the request (it had died), which makes
        # the request safe to retry on a fresh child; a pooled connection to a dead child would
        # fail like a request killed mid-generation instead.
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(None, connect=connect_timeout_s),
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @staticmethod
    def path_of(request: CompletionRequest) -> str:
        """llama-server's route for the request: chat (template applied) or text (as given)."""
        return "/v1/completions" if request.prompt is not None else "/v1/chat/completions"

    @staticmethod
    def request_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """llama-server's JSON body for ``request``."""
        body: dict[str, Any]
        if request.prompt is not None:
            body = {"prompt": request.prompt}
        else:
            body = {"messages": [dict(m) for m in request.messages]}
        body.update(sampling_params(request.options))
        body.update({"n_probs": 0, "cache_prompt": True, "stream": stream})
        if request.grammar is not None:
            body["grammar"] = request.grammar
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One completion, whole: gathered from its stream, or asked in one piece when the
        client was made with ``stream_whole=False`` (why: the module's docstring)."""
        text: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, float] = {}
        last: dict[str, Any] = {}
        whole = not self._stream_whole
        body = self.request_body(request, stream=not whole)
        async for delta in self._events(self.path_of(request), body, whole=whole, gathered=True):
            text.append(delta.text)
            reasoning.append(delta.reasoning)
            finish = delta.finish_reason or finish
            usage, timings, last = delta.usage or usage, delta.timings or timings, delta.raw
        return CompletionResult(
            text="".join(text),
            reasoning="".join(reasoning) or None,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            timings=dict(timings),
            raw=last,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionDelta]:
        """The completion as it is generated (server-sent events). Closing the iterator early
        (or cancelling the consumer) closes the connection, which stops the generation."""
        # A fresh connection per stream: llama-server (Debian build 11669) stops its task loop
        # when a kept-alive connection is reused after a streamed answer; closing it after
        # the stream avoids that (measured: 40 streams in a row without it dying).
        body = self.request_body(request, stream=True)
        async for delta in self._events(self.path_of(request), body):
            yield delta

    async def _events(
        self, path: str, body: dict[str, Any], *, whole: bool = False, gathered: bool = False
    ) -> AsyncIterator[CompletionDelta]:
        # Per generated token: read by `event_reader` (why: its docstring), not through httpx.
        # ``whole``: one answer in one piece, parsed like a last event.
        async for payload in post_events(
            self._host,
            self._port,
            path,
            body,
            connect_timeout_s=self._connect_timeout_s,
            whole=whole,
            gathered=gathered,
        ):
            delta = _parse_event(payload)
            if delta is _DONE:
                return
            if delta is not None:
                yield delta

    async def embed(self, text: str) -> list[float]:
        """The embedding of `text`, not normalised: the pooled vector when the model defines a
        pooling, otherwise the last token's (the reference's behaviour). Empty text → []."""
        if text == "":
            return []
        try:
            response = await self._http.post(
                self._url("/embedding"), json={"content": text, "embd_normalize": -1}
            )
        except httpx.HTTPError as error:
            raise _connection_error(error, "embedding") from error
        if response.status_code >= 400:
            raise EngineRequestError(_error_message(response), status=response.status_code)
        try:
            data = response.json()
        except ValueError as error:
            raise EngineError(f"engine sent an unreadable embedding: {error}") from error
        return _last_vector(data)

    async def kv_cache(self, model: str, timeout_s: float = 1.0) -> KvCacheReport | None:
        """The child's KV cache from its ``/slots`` report (None: it did not answer in
        ``timeout_s``, or not with slots). For a metrics scrape: it never raises."""
        try:
            response = await self._http.get(self._url("/slots"), timeout=timeout_s)
            slots = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return kv_cache_report(model, slots)

    async def used_slots(self, timeout_s: float = 5.0) -> list[int]:
        """Ids of the slots whose KV cache holds tokens (``/slots`` ``n_prompt_tokens`` > 0);
        [] when the child does not answer."""
        try:
            response = await self._http.get(self._url("/slots"), timeout=timeout_s)
            slots = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return []
        if not isinstance(slots, list):
            return []
        return [
            int(slot["id"])
            for slot in slots
            if isinstance(slot, dict)
            and isinstance(slot.get("id"), int)
            and isinstance(slot.get("n_prompt_tokens"), int)
            and slot["n_prompt_tokens"] > 0
        ]

    async def slot_file(self, slot: int, action: str, filename: str, timeout_s: float) -> int:
        """``POST /slots/{slot}?action=save|restore`` with a file name in the child's
        ``--slot-save-path``: the tokens saved or restored. Raises `EngineError`."""
        try:
            response = await self._http.post(
                self._url(f"/slots/{slot}?action={action}"),
                json={"filename": filename},
                timeout=timeout_s,
            )
        except httpx.HTTPError as error:
            raise EngineError(f"slot {action} failed: {error}") from error
        body = response.json() if response.content else {}
        if response.status_code != 200 or not isinstance(body, dict):
            raise EngineError(f"slot {action} failed: HTTP {response.status_code} {body}")
        count = body.get("n_saved" if action == "save" else "n_restored")
        return int(count) if isinstance(count, int) else 0

    async def health(self) -> bool:
        """True when the child answers /health with 200 (model loaded, serving)."""
        try:
            response = await self._http.get(self._url("/health"), timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


_DONE: Any = object()


def _parse_event(payload: bytes) -> Any:
    """One event's `data:` payload as a `CompletionDelta`, `_DONE`, or None (nothing for us)."""
    if payload == b"[DONE]":
        return _DONE
    try:
        chunk = json.loads(payload)
    except ValueError as error:
        shown = payload[:200].decode("utf-8", "replace")
        raise EngineError(f"engine sent an unreadable stream event: {shown}") from error
    if not isinstance(chunk, dict):
        return None
    if "error" in chunk:
        problem = chunk["error"]
        message = problem.get("message") if isinstance(problem, dict) else str(problem)
        status = problem.get("code") if isinstance(problem, dict) else None
        raise EngineRequestError(str(message), status=status if isinstance(status, int) else None)
    choices = chunk.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    # A chat chunk carries `delta.content`, a whole chat answer `message.content`; a text
    # completion's (/v1/completions) `text`.
    delta = choice.get("delta") or choice.get("message") or {}
    return CompletionDelta(
        text=str(delta.get("content") or choice.get("text") or ""),
        reasoning=str(delta.get("reasoning_content") or ""),
        finish_reason=choice.get("finish_reason"),
        usage=chunk.get("usage"),
        timings=chunk.get("timings"),
        raw=chunk,
    )


def _last_vector(data: Any) -> list[float]:
    """/embedding answers `[{"index": 0, "embedding": [[...], ...]}]`: one pooled vector, or one
    vector per token when the model has no pooling (then the last token's is the sequence's)."""
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, dict) or "embedding" not in item:
        raise EngineError(f"engine sent an unexpected embedding: {str(data)[:200]}")
    embedding = item["embedding"]
    if embedding and isinstance(embedding[0], list):
        embedding = embedding[-1]
    return [float(x) for x in embedding]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def kv_cache_report(model: str, slots: Any) -> KvCacheReport | None:
    """Sum llama-server's ``/slots`` answer (a list of slots) into one report. A slot never used
    has no ``n_prompt_tokens`` (it holds nothing)."""
    if not isinstance(slots, list) or not slots:
        return None
    items = [slot for slot in slots if isinstance(slot, dict)]
    return KvCacheReport(
        model=model,
        used_tokens=sum(_count(slot.get("n_prompt_tokens")) for slot in items),
        capacity_tokens=sum(_count(slot.get("n_ctx")) for slot in items),
        slots=len(items),
        busy_slots=sum(1 for slot in items if slot.get("is_processing") is True),
    )
