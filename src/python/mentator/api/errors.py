"""Every error answer of the HTTP layer, in one place: the status, and the body in one of two
shapes.

* The wire-compatible routes answer the original's envelope
  ``{"duration":{"promptMsec":<int>,"queueMsec":<int>},"error":"<text>"}`` (reference §2.1) — the
  original used it for validation errors everywhere and for every /prompt and /embedding error;
  the port uses it for 404/405 and internal errors too (port.md "Fix").
* The OpenAI-compatible ``/v1`` routes answer OpenAI's ``{"error":{"message","type","param",
  "code"}}``.

Two kinds of errors reach `answer_for`: `ApiError` (the request itself is unreadable: body,
content type, validation — raised by this layer) and the use-cases' `InferenceError`s (already
logged by the use-case).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from mentator.inference.envelope import error_envelope
from mentator.inference.errors import InferenceError, ModelNotFound
from mentator.inference.timing import Duration

OPENAI_PREFIX = "/v1/"


class ApiError(Exception):
    """An answer other than 2xx decided by the HTTP layer: status, client-facing text, headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(message: str, duration: Duration | None = None) -> dict[str, Any]:
    """The JSON body of an error answer of the wire-compatible routes."""
    return error_envelope(message, duration)


def openai_error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def is_openai(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def answer_for(path: str, error: ApiError | InferenceError) -> JSONResponse:
    """The one translation of an error into an HTTP answer, in the shape the path speaks."""
    if isinstance(error, InferenceError):
        status, duration = error.code, error.duration
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else {}
    else:
        status, duration, headers = error.status, Duration(), error.headers
    if is_openai(path):
        code = "model_not_found" if isinstance(error, ModelNotFound) else None
        if status == 401:
            code = "invalid_api_key"  # what OpenAI's clients expect for a missing/wrong key
        body = openai_error_body(status, error.message, code)
    else:
        body = error_body(error.message, duration)
    return JSONResponse(body, status_code=status, headers=headers or None)
