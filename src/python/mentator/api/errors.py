"""The error envelope of the original service, in one place.

Every error the wire-compatible routes answer has the shape
``{"duration":{"promptMsec":<int>,"queueMsec":<int>},"error":"<text>"}`` (reference §2.1) — the
original used it for validation errors everywhere and for every /prompt and /embedding error; the
port uses it for 404/405 and internal errors too (port.md "Fix"). Only the OpenAI-compatible
``/v1`` routes answer OpenAI's own ``{"error":{"message","type","code"}}`` shape (see openai.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse


@dataclass(frozen=True)
class Duration:
    """The ``duration`` object: milliseconds spent generating and waiting in the queue."""

    prompt_msec: int = 0
    queue_msec: int = 0

    def to_json(self) -> dict[str, int]:
        return {"promptMsec": self.prompt_msec, "queueMsec": self.queue_msec}


class ApiError(Exception):
    """An answer other than 2xx: HTTP status, the client-facing text, and the durations so far.

    ``log_extra`` is what the error log line should carry when it differs from the text (the
    original logs the raw error; clients get the prefixed text).
    """

    def __init__(
        self,
        status: int,
        message: str,
        duration: Duration | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.duration = duration or Duration()
        self.headers = headers or {}

    def with_duration(self, duration: Duration) -> ApiError:
        """The same error carrying the durations measured up to the point it happened."""
        return ApiError(self.status, self.message, duration, headers=self.headers)


def error_body(message: str, duration: Duration | None = None) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"duration": (duration or Duration()).to_json(), "error": message}


def error_response(error: ApiError) -> JSONResponse:
    """The HTTP answer for an `ApiError`."""
    return JSONResponse(
        error_body(error.message, error.duration),
        status_code=error.status,
        headers=error.headers or None,
    )
