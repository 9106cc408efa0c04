"""How long the canary's speed window must be for a stable figure: every tier the machine has
(the CPU, and the GPU tiers of the container's backend decision) generates the canary's speed
request REPEATS times at each window length, sized by the tier's rate as the canary sizes it;
printed: tokens/s per repeat, the spread (max/min - 1) and the coefficient of variation.

Runs where `mentator` is importable and an engine is: in an image (the lavapipe TEST image here,
`bench/canary_lavapipe.py` starts it the same way), e.g.

    docker run --rm -v "$PWD/bench:/bench:ro" -v /tmp/dev:/fake-dev:ro \\
      -e MENTATOR_DEV_ROOT=/fake-dev mentator-llm-service-lavapipe-test \\
      /opt/mentator-llm-service/app/venv/bin/python /bench/canary_window.py

(/tmp/dev/dri/renderD128 an empty file: the probe's render node). Or on the host's CPU engine:
`MENTATOR_ENGINE_DIR=... python bench/canary_window.py --model FILE`. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

from mentator.backends import canary
from mentator.backends.choice import BackendChoice
from mentator.backends.layout import EngineLayout
from mentator.engine.canary import session_opener
from mentator.hardware.handoff import decided_backend

DEFAULT_MODEL = Path("/opt/mentator-llm-service/default-models")


def _model(named: str | None) -> Path:
    if named:
        return Path(named)
    return min(DEFAULT_MODEL.glob("*.gguf"), key=lambda path: path.stat().st_size)


async def measure(windows: list[float], repeats: int, model: Path) -> None:
    decision = decided_backend(os.environ)
    choices = {"cpu": BackendChoice("cpu", "bench")}
    if decision is not None:
        for tier in [decision, *decision.fallbacks]:
            if tier.is_gpu:
                choices[tier.backend] = tier
    engine_dir = Path(os.environ.get("MENTATOR_ENGINE_DIR", "/opt/mentator-llm-service/engine"))
    opener = session_opener(EngineLayout(engine_dir), model, choices)
    for name in choices:
        async with opener(name) as session:
            prompt = await session.tokenize(canary.PROMPT)
            warm = await session.continuation(prompt, canary.REFERENCE_TOKENS, canary.TOP_K)
            rate = warm.gen_n * 1000 / warm.gen_ms if warm.gen_ms else 10.0
            print(f"[{name}] rate in the correctness check: {rate:.1f} t/s", flush=True)
            for window in windows:
                tokens = canary._speed_tokens(rate, window)
                figures, seconds = [], []
                for _ in range(repeats):
                    _, _, gen_ms, gen_n = await session.speed(prompt, tokens)
                    figures.append(gen_n * 1000 / gen_ms)
                    seconds.append(gen_ms / 1000)
                spread = max(figures) / min(figures) - 1
                cv = statistics.stdev(figures) / statistics.mean(figures) if repeats > 1 else 0
                shown = " ".join(f"{value:.1f}" for value in figures)
                print(
                    f"[{name}] window {window:.1f} s ({tokens} tokens, generating "
                    f"{statistics.mean(seconds):.2f} s): {shown} t/s; "
                    f"spread {spread * 100:.1f} %, CV {cv * 100:.1f} %; "
                    f"load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="0.5,1,2,3")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model")
    args = parser.parse_args()
    windows = [float(item) for item in args.windows.split(",")]
    asyncio.run(measure(windows, args.repeats, _model(args.model)))


if __name__ == "__main__":
    main()
