"""Why a request could not be answered, in the original's words (reference §2.4, §2.5).

The use-cases raise these; the HTTP layer turns them into an answer in ONE place
(`api/app.py`): the original's ``{"duration", "error"}`` envelope, or OpenAI's error shape under
``/v1``. ``code`` is the status the original answers for each case; it belongs here, not to the
HTTP layer, because the chat log records it (reference §3, table ``prompt.code``).
"""

from __future__ import annotations

from typing import ClassVar

from mentator.inference.timing import Duration

TIMEOUT_MESSAGE = "cancelled by timeout"
STARTING_MESSAGE = (
    "service is starting: the model scan and the engine backend selection are not finished;"
    " retry in a few seconds"
)
CALLER_LEFT_MESSAGE = "cancelled: the client closed the connection"
DRAINING_MESSAGE = (
    "service is shutting down (draining): it takes no new requests; retry, another instance"
    " (or this one after its restart) will answer"
)
# Seconds a client should wait before retrying a request refused or cut off by the drain: a load
# balancer takes the instance out within its health-check interval.
DRAIN_RETRY_AFTER_S = 2


class InferenceError(Exception):
    """A request that cannot be answered; ``duration`` is what it spent until then."""

    code: ClassVar[int] = 500
    # How the request ended, for the metrics (``mentator_requests_total{outcome}``): one of a
    # small fixed set, so the label stays bounded.
    outcome: ClassVar[str] = "error"
    # Seconds after which a retry may succeed (the HTTP layer sends it as Retry-After).
    retry_after_s: ClassVar[int | None] = None

    def __init__(self, message: str, duration: Duration | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.duration = duration or Duration()


class InvalidRequest(InferenceError):  # noqa: N818 - an outcome
    """The request cannot work as asked (a schema without a grammar, bad messages, ...)."""

    code = 400
    outcome = "invalid"


class ModelNotFound(InvalidRequest):
    """No model of that name (reference: ``Model not found: "<name>"``)."""

    outcome = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f'Model not found: "{name}"')
        self.name = name


class AnswerRejected(InvalidRequest):
    """The model's answer is not JSON, or not valid for the request's schema (a 400 in the
    original: the client may retry with another prompt or model)."""

    outcome = "answer_rejected"


class SchemaRefused(InvalidRequest):
    """The request's JSON Schema is refused before anything is generated: it has no decoding
    grammar (``on create llama grammar: ...``) or can never validate an answer (``on validate
    response: ...``)."""

    outcome = "schema_refused"


class TimedOut(InvalidRequest):
    """``durationMsec`` passed while waiting or generating."""

    outcome = "timeout"

    def __init__(self) -> None:
        super().__init__(TIMEOUT_MESSAGE)


class EngineFailed(InferenceError):  # noqa: N818 - an outcome
    """The engine could not load the model or failed while generating."""

    code = 500
    outcome = "engine_error"


class NoRoom(InferenceError):  # noqa: N818 - an outcome
    """The model cannot be made resident: its estimated memory does not fit the budget or the
    memory free even alone, or pinned models hold the room (the message names the sizes and the
    limits). A 503: the server's capacity, not the request, is short; retrying the same request
    will not help until the configuration (or the memory free) changes."""

    code = 503
    outcome = "no_room"


class Busy(InferenceError):  # noqa: N818 - an outcome
    """The queue is full (the original's queue was unbounded)."""

    code = 503
    outcome = "busy"
    retry_after_s = 1


class Starting(InferenceError):  # noqa: N818 - an outcome
    """The first model scan or the backend selection is not finished."""

    code = 503
    outcome = "unavailable"

    def __init__(self) -> None:
        super().__init__(STARTING_MESSAGE)


class StartupFailed(InferenceError):  # noqa: N818 - an outcome
    """The startup failed (model scan or backend selection): the service cannot answer until it
    is restarted, so no retry advice; the reason is the one /health and the log give."""

    code = 503
    outcome = "unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"service unavailable: {reason}. Fix the cause (GET /health and the log say the same) "
            "and restart the service"
        )


class Draining(InferenceError):  # noqa: N818 - an outcome
    """The service is shutting down: a request that arrived after SIGTERM is refused at once
    (the ones already admitted run on, `inference.drain`)."""

    code = 503
    retry_after_s = DRAIN_RETRY_AFTER_S

    def __init__(self) -> None:
        super().__init__(DRAINING_MESSAGE)


class GraceEnded(InferenceError):  # noqa: N818 - an outcome
    """The service is shutting down and the drain's grace ended before this request finished:
    it was cut off (waiting for a slot or generating)."""

    code = 503
    retry_after_s = DRAIN_RETRY_AFTER_S

    def __init__(self, grace_s: float) -> None:
        super().__init__(
            f"service is shutting down: the drain grace of {grace_s:g} s (drainGraceMsec) ended"
            " before this request finished, so it was stopped; retry, another instance (or this"
            " one after its restart) will answer"
        )


class CallerLeft(InferenceError):  # noqa: N818 - an outcome
    """The client closed the connection; the chat log records nginx's 499."""

    code = 499
    outcome = "caller_left"

    def __init__(self) -> None:
        super().__init__(CALLER_LEFT_MESSAGE)
