"""`--detect-hardware`: print the backend decision as one JSON line on stdout (what
docker-entrypoint.sh hands to the service, `handoff.py`) and, with ``--explain``, the same in
words on stderr: the backend and why, then every tier skipped and why.

``--env-flag`` detects nothing: it reads the decision already in ``MENTATOR_BACKEND_DECISION``
(with the service's own parser) and prints the variable the original image exported for its
backend (`catalog.ORIGINAL_ENV_FLAG`, e.g. ``LLAMA_CUDA``), or an empty line; so the entrypoint
never parses JSON itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mentator.backends import catalog
from mentator.backends.canary import CACHE_FILE_NAME, CanaryReport
from mentator.backends.choice import BackendChoice
from mentator.config.keys import DOCKER_DATA_ROOT
from mentator.hardware.handoff import DECISION_ENV, decided_backend
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend

DATA_DIR_ENV = "MENTATOR_DATA_DIR"


def explain(choice: BackendChoice) -> list[str]:
    """The decision in words, one line each (the entrypoint logs them)."""
    variant = f", CPU variant {choice.cpu_variant}" if choice.cpu_variant else ""
    lines = [f"Selected backend: {choice.backend} ({choice.reason}{variant})"]
    lines += [f"  {tier} skipped: {why}" for tier, why in choice.skipped.items()]
    return lines


def explain_canary(data_dir: Path) -> list[str]:
    """The start-up canary's last report (the service runs it and caches it in the data folder):
    every tier's probe, load, correctness and speed, and the choice."""
    cache = data_dir / CACHE_FILE_NAME
    try:
        report = CanaryReport.from_json(json.loads(cache.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return [f"canary: not run yet (the service runs it at start and caches it in {cache})"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return [f"canary: {cache} is unreadable ({error}); the service runs it again at start"]
    return [
        *report.lines(),
        f"  (cached in {cache}; run again when the hardware, driver, engine, image or model"
        " changes)",
    ]


def _print_env_flag() -> int:
    choice = decided_backend(os.environ)
    if choice is None:
        sys.stderr.write(
            f"ERROR: --env-flag needs a decision in ${DECISION_ENV}"
            " (the JSON line of --detect-hardware); it is missing or unreadable\n"
        )
        return 1
    sys.stdout.write((catalog.backend(choice.backend).original_env_flag or "") + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mentator --detect-hardware",
        description="Detect the best engine backend (CUDA → ROCm → Vulkan → CPU) and print it "
        "as one JSON line.",
    )
    parser.add_argument(
        "--engine-dir",
        type=Path,
        default=None,
        help="engine folder (default: $MENTATOR_ENGINE_DIR)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also write the decision and the reason for every skipped tier to stderr",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="with --explain: the data folder whose cached backend canary to show"
        f" (default: ${DATA_DIR_ENV}, else {DOCKER_DATA_ROOT})",
    )
    parser.add_argument(
        "--env-flag",
        action="store_true",
        help=f"detect nothing: print the variable the original image set for the decision in"
        f" ${DECISION_ENV} (LLAMA_CUDA, LLAMA_HIPBLAS) or an empty line",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.env_flag:
        return _print_env_flag()
    env = ProbeEnv.from_environ(os.environ, engine_dir=args.engine_dir)
    choice = select_backend(env)
    sys.stdout.write(json.dumps(choice.to_json(), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    if args.explain:
        data_dir = args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or DOCKER_DATA_ROOT)
        lines = explain(choice) + explain_canary(data_dir)
        sys.stderr.write("".join(line + "\n" for line in lines))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the entrypoint
    raise SystemExit(main())
