"""`--detect-hardware`: print the backend choice as one JSON line (read by docker-entrypoint.sh)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mentator.hardware.probes import ProbeEnv
from mentator.hardware.selection import select_backend


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
    args = parser.parse_args(list(argv) if argv is not None else None)
    env = ProbeEnv.from_environ(os.environ, engine_dir=args.engine_dir)
    choice = select_backend(env)
    sys.stdout.write(json.dumps(choice.to_json(), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the entrypoint
    raise SystemExit(main())
