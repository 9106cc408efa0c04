"""The original's answer envelope (reference §2.1): ``{"duration": {...}, "result": {...}}`` on
success, ``{"duration": {...}, "error": "<text>"}`` otherwise. The chat log stores exactly the
envelope that was sent, so the use-cases build it and the HTTP layer sends it unchanged."""

from __future__ import annotations

from typing import Any

from mentator.inference.timing import Duration


def success_envelope(result: dict[str, Any], duration: Duration) -> dict[str, Any]:
    return {"duration": duration.to_json(), "result": result}


def error_envelope(message: str, duration: Duration | None = None) -> dict[str, Any]:
    return {"duration": (duration or Duration()).to_json(), "error": message}
