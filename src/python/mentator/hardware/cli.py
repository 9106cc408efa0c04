"""`--detect-hardware`: print the backend decision as one JSON line on stdout (what
docker-entrypoint.sh hands to the service, `handoff.py`) and, with ``--explain``, the same in
words on stderr: the backend and why, then every tier skipped and why."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mentator.backends.choice import BackendChoice
from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend


def explain(choice: BackendChoice) -> list[str]:
    """The decision in words, one line each (the entrypoint logs them)."""
    variant = f", CPU variant {choice.cpu_variant}" if choice.cpu_variant else ""
    lines = [f"Selected backend: {choice.backend} ({choice.reason}{variant})"]
    lines += [f"  {tier} skipped: {why}" for tier, why in choice.skipped.items()]
    return lines


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
    args = parser.parse_args(list(argv) if argv is not None else None)
    env = ProbeEnv.from_environ(os.environ, engine_dir=args.engine_dir)
    choice = select_backend(env)
    sys.stdout.write(json.dumps(choice.to_json(), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    if args.explain:
        sys.stderr.write("".join(line + "\n" for line in explain(choice)))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the entrypoint
    raise SystemExit(main())
