"""What the use-cases hand to shadow traffic, and what it reports back (the port; the sender is
`replay.shadow.Shadow`, built by the server when ``shadowUrl`` is set).

An ended completion exchange is offered as an `ExchangeCopy` — the route, the body as the caller
sent it, and the envelope that was answered — exactly what a chat-log row holds, so a live copy is
compared the same way as a replayed row. `ShadowPort.offer` never blocks and never raises into
the caller's request: sampling, queueing (bounded) and sending are the shadow's business.
A request that is itself a shadow copy (header `SHADOW_HEADER`) is never offered again, so two
services shadowing each other cannot loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SHADOW_HEADER = "X-Mentator-Shadow"


@dataclass(frozen=True)
class ExchangeCopy:
    """One answered completion, as the shadow needs it."""

    route: str  # the caller's route path: /prompt, /v1/chat/completions, /v1/completions
    code: int
    request: str  # the request body as JSON text (as the chat log stores it)
    response: str  # the envelope answered, as JSON text
    primary_ms: int  # queue plus prompt time


@dataclass(frozen=True)
class ShadowStats:
    """The shadow's counts since the start (``queued``: copies waiting now)."""

    target: str
    percent: int
    identical: int = 0
    different: int = 0
    error: int = 0
    dropped: int = 0
    queued: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "share": self.percent / 100,
            "identical": self.identical,
            "different": self.different,
            "error": self.error,
            "dropped": self.dropped,
            "queued": self.queued,
        }


class ShadowPort(Protocol):
    def offer(self, copy: ExchangeCopy) -> None: ...

    def stats(self) -> ShadowStats: ...
