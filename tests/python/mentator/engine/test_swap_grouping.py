"""The anti-thrash grouping rule (`residency.swap_may_start`) without an engine: the rule itself,
and a deterministic simulation of bench/residency_trace.py's trace (60 requests over 3 models,
seed 21, 4 closed-loop clients, room for 2 models) that counts loads in plain LRU order and
with the rule.

The simulation follows the manager's placement: a request for a resident model is served at
once (each model has its own slots); a request for a missing model waits; one placement at a
time, in the order the missing models were first asked for; a placement that does not fit
evicts the least recently used idle model (`residency.least_recently_used`) — with grouping only
once `swap_may_start` allows it. Serving takes `SERVE_S`, a load `LOAD_S` (the bench's
8-token answers vs a few seconds' load on a busy machine; the counts barely depend on them).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from mentator.engine.residency import (
    GROUPING_BOUND_S,
    GROUPING_QUIET_S,
    least_recently_used,
    swap_may_start,
)
from mentator_testing.model_trace import model_trace

NAMES = ("a", "b", "c")
SERVE_S = 0.2
LOAD_S = 5.0
POLL_S = 0.1  # the manager's GROUPING_POLL_S


def bench_trace(requests: int, seed: int, stay: float = 0.5) -> list[str]:
    """bench/residency_trace.py's trace (the same draws, one-letter names)."""
    return model_trace(NAMES, requests, seed, stay)


@dataclass
class Resident:
    name: str
    last_active_s: float
    use_order: int
    in_flight: int = 0
    pinned: bool = False


@dataclass
class Outcome:
    loads: int = 0
    seconds: float = 0.0
    # Per request that had to wait for its model: other models' loads started while it waited.
    loads_ahead: list[int] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)


SwapRule = Callable[[list[Resident], float, float], bool]


def simulate(names: list[str], rule: SwapRule | None, clients: int = 4, room: int = 2) -> Outcome:
    """Closed loop: each client sends the trace's next request when its answer came."""
    outcome = Outcome()
    pending = iter(names)
    residents: dict[str, Resident] = {}
    waiting: dict[str, list[float]] = {}  # by model: arrival times
    order: list[str] = []  # missing models, in the order first asked for
    loading: str | None = None
    load_starts: list[tuple[float, str]] = []
    swap_since: float | None = None
    uses = 0
    events: list[tuple[float, int, str, str]] = []
    sequence = 0

    def at(when: float, kind: str, name: str) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (when, sequence, kind, name))

    def serve(resident: Resident, now: float) -> None:
        nonlocal uses
        uses += 1
        resident.use_order, resident.last_active_s = uses, now
        resident.in_flight += 1
        at(now + SERVE_S, "answered", resident.name)

    def next_request(now: float) -> None:
        name = next(pending, None)
        if name is None:
            return
        if name in residents:
            serve(residents[name], now)
            return
        waiting.setdefault(name, []).append(now)
        if name not in order and name != loading:
            order.append(name)

    def place(now: float) -> None:
        nonlocal loading, swap_since
        if loading is not None or not order:
            return
        if len(residents) >= room:
            swap_since = now if swap_since is None else swap_since
            victim = least_recently_used(list(residents.values()))
            allowed = rule is None or rule(list(residents.values()), now, now - swap_since)
            if victim is None or not allowed:
                at(now + POLL_S, "poll", "")
                return
            del residents[victim.name]
        loading, swap_since = order.pop(0), None
        outcome.loads += 1
        load_starts.append((now, loading))
        at(now + LOAD_S, "loaded", loading)

    for _ in range(clients):
        next_request(0.0)
    place(0.0)
    while events:
        now, _, kind, name = heapq.heappop(events)
        if kind == "answered":
            residents[name].in_flight -= 1
            residents[name].last_active_s = now
            next_request(now)
        elif kind == "loaded":
            loading = None
            uses += 1
            residents[name] = Resident(name, now, uses)
            own_start = max(start for start, model in load_starts if model == name)
            for arrived in waiting.pop(name, []):
                ahead = [m for s, m in load_starts if arrived <= s < own_start and m != name]
                outcome.loads_ahead.append(len(ahead))
                outcome.waits_s.append(now - arrived)
                serve(residents[name], now)
        place(now)
        outcome.seconds = now
    return outcome


def test_swaps_wait_while_the_residents_serve() -> None:
    busy = Resident("a", last_active_s=100.0, use_order=1, in_flight=1)
    just_answered = Resident("b", last_active_s=100.0 - GROUPING_QUIET_S / 2, use_order=2)
    quiet = Resident("c", last_active_s=100.0 - GROUPING_QUIET_S, use_order=3)
    assert swap_may_start([quiet], 100.0, waited_s=0.0)
    assert not swap_may_start([quiet, busy], 100.0, waited_s=0.0)
    assert not swap_may_start([quiet, just_answered], 100.0, waited_s=0.0)
    # The bound: traffic that never pauses does not hold the swap back longer.
    assert swap_may_start([busy, just_answered], 100.0, waited_s=GROUPING_BOUND_S)


def test_the_simulated_trace_is_the_benchs() -> None:
    assert "".join(bench_trace(24, 21)) == "aacccabaabbacbacbbaaccbb"


@pytest.mark.parametrize("requests", [24, 60])
def test_grouping_halves_the_loads_of_the_benchs_trace(requests: int) -> None:
    """60 requests: 17 loads in plain LRU order, 7 grouped (24: 9 vs 4)."""
    names = bench_trace(requests, 21)
    plain = simulate(names, None)
    grouped = simulate(names, swap_may_start)
    assert grouped.loads <= plain.loads / 2, (plain.loads, grouped.loads)
    assert grouped.seconds < plain.seconds  # fewer loads: the whole trace is done sooner


def test_grouping_keeps_the_fairness_bound() -> None:
    """A request that waits for its model sees at most one other model's load start before its
    own (the one already under way or queued ahead of it), and waits at most that load, the
    grouping bound and its own load."""
    outcome = simulate(bench_trace(60, 21), swap_may_start)
    assert max(outcome.loads_ahead) <= 1, outcome.loads_ahead
    assert max(outcome.waits_s) <= 2 * LOAD_S + GROUPING_BOUND_S + SERVE_S, outcome.waits_s
