"""The run-time speed tripwire with made-up exchanges: trips after several slow requests in a
row, says so in the log with both numbers, clears when the speed returns, ignores what the
calibrated figure does not cover."""

from __future__ import annotations

from dataclasses import replace

from mentator.backends.canary import CanaryReport, TierResult
from mentator.backends.choice import BackendChoice
from mentator.inference.exchange import ExchangeReport
from mentator.inference.timing import Duration
from mentator.inference.tripwire import SpeedTripwire

CANARY = CanaryReport(
    fingerprint="f",
    tiers=[TierResult("vulkan", True, True, None, None, 100.0, 40.0)],
    chosen="vulkan",
    reason="test",
    model="small",
)
CHOICE = BackendChoice(backend="vulkan", reason="test", canary=CANARY)


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, pipe: str, message: str, extra: str | None = None) -> None:
        self.lines.append(("error", message))

    def debug(self, pipe: str, message: str, extra: str | None = None) -> None:
        self.lines.append(("debug", message))

    def trace(self, pipe: str, message: str, extra: str | None = None) -> None:
        self.lines.append(("trace", message))


def report(tokens_per_s: float, **changes: object) -> ExchangeReport:
    base = ExchangeReport(
        route="/prompt",
        kind="completion",
        code=200,
        outcome="ok",
        duration=Duration(1000, 0),
        model="small",
        constrained=False,
        prompt_tokens=10,
        tokens=32,
        first_token_s=0.1,
        per_token_s=1.0 / tokens_per_s,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_trips_after_three_slow_requests_in_a_row_and_clears() -> None:
    wire, logger = SpeedTripwire(), Logger()
    for _ in range(2):
        wire.observe(report(10.0), CHOICE, logger)
    assert not wire.degraded
    wire.observe(report(30.0), CHOICE, logger)  # at speed: the streak starts over
    for _ in range(2):
        wire.observe(report(10.0), CHOICE, logger)
    assert not wire.degraded
    wire.observe(report(10.0), CHOICE, logger)
    assert wire.degraded and wire.trips == 1
    assert wire.reason is not None and "10.0 t/s, below 0.3x of the 40.0 t/s" in wire.reason
    assert logger.lines[-1][0] == "error" and "10.0 t/s" in logger.lines[-1][1]
    wire.observe(report(9.0), CHOICE, logger)
    assert wire.trips == 1  # one trip per episode
    wire.observe(report(35.0), CHOICE, logger)
    assert not wire.degraded
    back = "backend vulkan speed is back: 35.0 t/s (calibrated 40.0 t/s)"
    assert logger.lines[-1] == ("debug", back)
    assert wire.to_json()["trips"] == 1


def test_ignores_what_the_calibration_does_not_cover() -> None:
    wire, logger = SpeedTripwire(), Logger()
    others = [
        report(1.0, model="big"),  # another model is slower by nature
        report(1.0, constrained=True),  # a grammar slows decoding
        report(1.0, tokens=3),  # too few tokens to time
        report(1.0, outcome="aborted"),
        report(1.0, kind="embedding"),
    ]
    for _ in range(3):
        for item in others:
            wire.observe(item, CHOICE, logger)
        wire.observe(report(1.0), BackendChoice(backend="cpu", reason="no canary"), logger)
        wire.observe(report(1.0), None, logger)
    assert not wire.degraded and wire.slow_in_a_row == 0 and logger.lines == []
