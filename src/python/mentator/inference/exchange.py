"""The one record of every request a use-case answers: its timing, its log line, its chat-log row
and its metrics — for successes and failures alike, for `/prompt` (with or without tools), the
`/v1` chat and text completions (whole or streamed) and both embedding paths.

A use-case opens an `Exchange` (`ExchangeRecorder.begin`), fills in what it learns (load status,
answer text, tokens) and ends it once: `Exchange.succeeded` or `Exchange.failed`. Rules kept in
this one place (reference §3):
* a failure is logged as an ERROR line of the caller's pipe; a success as a DEBUG line holding
  the duration and what the use-case adds (``loadModelStatus``, ``stream``, ...);
* completions store a chat-log row (the envelope that was sent, and the raw answer): failures
  always, successes when ``log.savePrompt`` is on; embeddings are never stored;
* an answered or failed completion is offered to shadow traffic when it is configured
  (`inference.shadowing`; never a request that is itself a shadow copy);
* the observer (the HTTP layer's metrics) sees every ended exchange, as an `ExchangeReport`:
  its outcome, the model (the registry's name, None when unknown), whether a grammar constrained
  the decoding, the tokens, and the time to the first token and per output token. For a stream
  these are measured here as the pieces arrive; for a whole answer they come from the engine's
  own ``timings`` (llama-server's ``predicted_ms`` / ``predicted_n``), since the first token is
  never seen on its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from mentator.config.settings import Settings
from mentator.engine.ports import CompletionResult, LoadStatus
from mentator.inference.envelope import error_envelope, success_envelope
from mentator.inference.errors import InferenceError
from mentator.inference.requests import Caller
from mentator.inference.shadowing import ExchangeCopy, ShadowPort
from mentator.inference.slots import until_caller_leaves
from mentator.inference.timing import Duration, Timing
from mentator.jsontext import json_text
from mentator.logging_protocol import LoggerProtocol
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.database import DB_PIPE, StorageError

T = TypeVar("T")
Kind = Literal["completion", "embedding"]


SUCCESS_OUTCOME = "ok"


@dataclass(frozen=True)
class ExchangeReport:
    """What the observer learns of one ended exchange."""

    route: str  # the caller's route path (``/prompt``, ``/v1/chat/completions``, ...)
    kind: Kind
    code: int
    outcome: str  # "ok", or the failure's `InferenceError.outcome`
    duration: Duration
    model: str | None  # the registry's name of the asked model; None: not a known model
    constrained: bool | None  # a grammar constrained the decoding (None: not a completion)
    prompt_tokens: int | None
    tokens: int | None  # generated
    first_token_s: float | None  # from arrival to the first token (queue and load included)
    per_token_s: float | None  # mean time between output tokens after the first


class ExchangeObserver(Protocol):
    """Who counts ended exchanges (`api.metrics.ApiMetrics`)."""

    def exchange_ended(self, report: ExchangeReport) -> None: ...


class RecorderParts(Protocol):
    """What the recorder reads at each exchange (`context.ServiceContext`): the chat log (None
    while the database is unavailable; it may be reopened later, so it is never kept) and the
    settings (``log.savePrompt``)."""

    @property
    def chatlog(self) -> ChatLogStore | None: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def shadow(self) -> ShadowPort | None: ...


@dataclass
class Exchange:
    """One request as it goes: what it produced so far, for the answer, the log and the chat
    log. A completion is stored in the chat log with ``stored_request`` (the body as sent);
    an embedding never is."""

    recorder: ExchangeRecorder
    caller: Caller
    kind: Kind
    stored_request: Any | None
    timing: Timing = field(default_factory=Timing)
    load_status: LoadStatus | None = None
    answer_raw: str | None = None
    tokens: int | None = None
    prompt_tokens: int | None = None
    model: str | None = None  # the registry's name (the metrics' label), once known
    constrained: bool | None = None  # a grammar constrains the decoding
    duration: Duration = field(default_factory=Duration)  # set when it ends
    # Token timing (`time.monotonic` instants): a stream's first and latest piece, or the
    # instant a whole answer arrived with the engine's own timings.
    first_token_at: float | None = None
    last_token_at: float | None = None
    answered_at: float | None = None
    engine_timings: Mapping[str, float] | None = None

    def generated(self, result: CompletionResult) -> None:
        """A whole answer arrived: its tokens and the engine's timings."""
        self.answered_at = time.monotonic()
        self.tokens = result.completion_tokens
        self.prompt_tokens = result.prompt_tokens
        self.engine_timings = result.timings

    def piece_arrived(self) -> None:
        """A streamed piece of text arrived."""
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now

    def token_times(self) -> tuple[float | None, float | None]:
        """(time to the first token, mean time per output token after it), in seconds; None
        where it cannot be known (no token, one token, an engine that sent no timings)."""
        started = self.timing.started
        tokens = self.tokens or 0
        timings = self.engine_timings or {}
        predicted_ms = timings.get("predicted_ms")
        predicted_n = timings.get("predicted_n")
        if self.answered_at is not None and predicted_ms is not None and predicted_n:
            # The engine generated for predicted_ms before the answer arrived; the first token
            # came out when that began.
            first = max(0.0, self.answered_at - started - predicted_ms / 1000)
            return first, predicted_ms / 1000 / predicted_n
        if self.first_token_at is None:
            return None, None
        first = self.first_token_at - started
        if tokens < 2 or self.last_token_at is None:
            return first, None
        return first, (self.last_token_at - self.first_token_at) / (tokens - 1)

    def report(self, code: int, outcome: str) -> ExchangeReport:
        first, per_token = self.token_times()
        return ExchangeReport(
            route=self.caller.route,
            kind=self.kind,
            code=code,
            outcome=outcome,
            duration=self.duration,
            model=self.model,
            constrained=self.constrained,
            prompt_tokens=self.prompt_tokens,
            tokens=self.tokens,
            first_token_s=first,
            per_token_s=per_token,
        )

    async def run(self, work: Awaitable[T]) -> T:
        """``work`` until it ends or the caller leaves; a failure is recorded, then raised."""
        try:
            return await until_caller_leaves(work, self.caller.left() if self.caller.left else None)
        except InferenceError as failure:
            self.failed(failure)
            raise

    def succeeded(self, result: dict[str, Any], **log_fields: object) -> dict[str, Any]:
        """Record a success; the original's envelope around ``result`` (what is sent)."""
        duration = self.duration = self.timing.duration()
        body = success_envelope(result, duration)
        self.recorder.ended(
            self,
            200,
            duration,
            body,
            {"duration": duration.to_json(), **log_fields},
            SUCCESS_OUTCOME,
        )
        return body

    def failed(self, failure: InferenceError) -> None:
        """Record a failure (its ``duration`` is set here, for the answer)."""
        failure.duration = self.duration = self.timing.duration()
        body = error_envelope(failure.message, failure.duration)
        self.recorder.ended(
            self, failure.code, failure.duration, body, failure.message, failure.outcome
        )


class ExchangeRecorder:
    """Logs, stores and counts ended exchanges (built once per service)."""

    def __init__(
        self,
        *,
        logger: LoggerProtocol,
        parts: RecorderParts,
        clock_ms: Callable[[], int],
        observer: ExchangeObserver | None = None,
    ) -> None:
        self._logger = logger
        self._parts = parts
        self._clock_ms = clock_ms
        self._observer = observer

    def begin(
        self,
        caller: Caller,
        kind: Kind,
        stored_request: Any | None = None,
        *,
        model: str | None = None,
    ) -> Exchange:
        return Exchange(self, caller, kind, stored_request, model=model)

    def ended(
        self,
        exchange: Exchange,
        code: int,
        duration: Duration,
        body: dict[str, Any],
        log: str | dict[str, object],
        outcome: str,
    ) -> None:
        """Called once per exchange, by `Exchange.succeeded` or `.failed`."""
        caller = exchange.caller
        if isinstance(log, str):
            self._logger.error(caller.pipe, caller.message, log)
        else:
            self._logger.debug(caller.pipe, caller.message, json_text(log))
        if exchange.kind == "completion":
            self._store(code, duration, exchange.stored_request, body, exchange.answer_raw)
            self._offer_shadow(exchange, code, duration, body)
        if self._observer is not None:
            self._observer.exchange_ended(exchange.report(code, outcome))

    def _offer_shadow(
        self, exchange: Exchange, code: int, duration: Duration, body: dict[str, Any]
    ) -> None:
        shadow = self._parts.shadow
        if shadow is None or exchange.caller.shadow_copy or exchange.stored_request is None:
            return
        copy = ExchangeCopy(
            route=exchange.caller.route,
            code=code,
            request=json_text(exchange.stored_request),
            response=json_text(body),
            primary_ms=duration.prompt_msec + duration.queue_msec,
        )
        shadow.offer(copy)

    def _store(
        self, code: int, duration: Duration, request: Any, body: dict[str, Any], raw: str | None
    ) -> None:
        """One chat-log row (the /state stats count them): errors always, successes when
        ``log.savePrompt`` is on."""
        chatlog = self._parts.chatlog
        if chatlog is None or (code == 200 and not self._parts.settings.log.save_prompt):
            return
        try:
            chatlog.write(
                self._clock_ms(),
                code,
                duration.prompt_msec,
                duration.queue_msec,
                json_text(request),
                json_text(body),
                raw,
            )
        except StorageError as error:
            self._logger.error(DB_PIPE, str(error))
