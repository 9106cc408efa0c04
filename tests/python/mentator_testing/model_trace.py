"""The seeded request trace over several models that bench/residency_trace.py replays.

One definition for the benchmark and for the simulation in test_swap_grouping.py, so that the
simulation predicts the benchmark's very order of requests (same seed, same draws).
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def model_trace(names: Sequence[str], requests: int, seed: int, stay: float) -> list[str]:
    """Model names in request order: the same model again with probability ``stay``."""
    chooser = random.Random(seed)
    order = [names[0]]
    while len(order) < requests:
        last = order[-1]
        if chooser.random() < stay:
            order.append(last)
        else:
            order.append(chooser.choice([name for name in names if name != last]))
    return order
