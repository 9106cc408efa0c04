"""The run-time tripwire: the chosen backend generating far slower than the canary measured.

Thermal throttling, another process on the GPU, or a driver that fell back to a slow path do not
stop a backend: they slow it. Every answered, unconstrained completion of the canary's own model
(the only one the calibrated figure is valid for) with enough tokens is compared with the
canary's generation speed; `TRIP_COUNT` such requests in a row below `TRIP_RATIO` of it trip the
wire: a warning log with both numbers, /health ``degraded`` with the reason, a count in /metrics,
a line on the stat page. The first request back at speed clears it (logged too).

Parallel requests share the engine and each goes slower than one alone: the ratio leaves room
for that (the canary measures one request alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from mentator.backends.choice import BackendChoice
from mentator.inference.exchange import SUCCESS_OUTCOME, ExchangeReport
from mentator.logging_protocol import LoggerProtocol

TRIP_RATIO = 0.3
TRIP_COUNT = 3
MIN_TOKENS = 8  # fewer generated tokens say too little about the speed
PIPE = "APP"


@dataclass
class SpeedTripwire:
    ratio: float = TRIP_RATIO
    count: int = TRIP_COUNT
    slow_in_a_row: int = 0
    reason: str | None = None  # set while tripped
    trips: int = 0  # how often it tripped (the /metrics counter)
    last_tps: float | None = None
    calibrated_tps: float | None = None

    @property
    def degraded(self) -> bool:
        return self.reason is not None

    def observe(
        self, report: ExchangeReport, choice: BackendChoice | None, logger: LoggerProtocol
    ) -> None:
        """Weigh one ended exchange against the canary of ``choice`` (the backend in use)."""
        if choice is None or choice.canary is None or choice.canary.chosen != choice.backend:
            return
        canary = choice.canary
        calibrated = canary.calibrated_tps
        if (
            not calibrated
            or report.kind != "completion"
            or report.outcome != SUCCESS_OUTCOME
            or report.constrained
            or not report.per_token_s
            or (report.tokens or 0) < MIN_TOKENS
            or canary.model is None
            or report.model != canary.model
        ):
            return
        speed = 1.0 / report.per_token_s
        self.last_tps, self.calibrated_tps = speed, calibrated
        backend = canary.chosen
        if speed >= self.ratio * calibrated:
            if self.reason is not None:
                logger.debug(
                    PIPE,
                    f"backend {backend} speed is back: {speed:.1f} t/s"
                    f" (calibrated {calibrated:.1f} t/s)",
                )
            self.slow_in_a_row, self.reason = 0, None
            return
        self.slow_in_a_row += 1
        if self.slow_in_a_row >= self.count and self.reason is None:
            self.trips += 1
            self.reason = (
                f"backend {backend} generates at {speed:.1f} t/s, below {self.ratio:g}x of the"
                f" {calibrated:.1f} t/s the canary measured, {self.slow_in_a_row} requests in a"
                " row (throttling, another process on the device, or a driver fallback?)"
            )
            logger.error(PIPE, f"WARNING: {self.reason}")

    def to_json(self) -> dict[str, object]:
        return {
            "degraded": self.degraded,
            "reason": self.reason,
            "calibratedTokensPerSecond": _round(self.calibrated_tps),
            "lastTokensPerSecond": _round(self.last_tps),
            "slowInARow": self.slow_in_a_row,
            "trips": self.trips,
        }


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None
