"""How long a request took, as the original reports it: ``promptMsec`` is everything except the
wait for a queue slot, ``queueMsec`` that wait (reference §2.4 "Durations")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Duration:
    """The ``duration`` object of every answer, in milliseconds."""

    prompt_msec: int = 0
    queue_msec: int = 0

    def to_json(self) -> dict[str, int]:
        return {"promptMsec": self.prompt_msec, "queueMsec": self.queue_msec}


@dataclass
class Timing:
    """Wall time of one request, from its arrival."""

    started: float = field(default_factory=time.monotonic)
    queue_ms: int = 0

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    def duration(self) -> Duration:
        return Duration(
            prompt_msec=max(0, self.elapsed_ms() - self.queue_ms), queue_msec=self.queue_ms
        )
