"""Benchmark (prints, never asserts): constrained decoding (a JSON Schema's grammar) vs free
decoding of the same prompt, same token count (issue 20, item 7).

Over a seeded sample of JSONSchemaBench (``../shared/schemabench/all/``, read in place; the same
draw as ``bench/schemabench_model.py``: ``--per-subset`` of each subset, ``--small-subsets`` of
GitHub trivial and ultra, ``--seed``), each schema the converter accepts is asked of one
llama-server started here (MENTATOR_ENGINE_DIR, MENTATOR_TEST_MODEL; ``-np 1``, temperature 0):

1. constrained: the schema's grammar (``schema.gbnf``, the service's default: compact JSON) and,
   as the service sends under a grammar by default (``grammarDry``), the DRY sampler
   (``--no-dry``: without it), ``max_tokens`` ``--max-tokens``; it stops where the grammar (or
   the limit) ends it: N tokens;
2. free: the same messages, no grammar, ``ignore_eos`` and ``max_tokens`` N, so exactly as many
   tokens are generated.

Tokens/s of each is the engine's own (``timings.predicted_n / predicted_ms``: generation only,
the prompt is not counted; the prompt is cached after the first request). Answers shorter than
``--min-tokens`` are left out (too short to time). Printed: per subset and overall the medians of
constrained t/s, free t/s and their ratio (constrained / free; 1.0 = the grammar costs nothing),
each pair ``--repeat`` times (the median of the repeats per schema).

    ./pants run bench/constrained_vs_free.py -- [--per-subset 35 --small-subsets 10] [--seed 20]
        [--max-tokens 256] [--repeat 1] [--limit N] [--no-dry]

Uses MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL (./pants sets both to the repository's copies).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from mentator.engine.client import sampling_params
from mentator.inference.completion import GRAMMAR_DRY
from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf

# The sample's draw is schemabench_model.py's (same folder, seed, counts): imported by path so
# the two benchmarks stay one table.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from schemabench_model import DEFAULT_FOLDER, sample

SYSTEM = "Answer only with JSON."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def engine(engine_dir: Path, model: Path, context: int) -> Iterator[str]:
    port = free_port()
    argv = [
        str(engine_dir / "llama-server"),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-np",
        "1",
        "-c",
        str(context),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise SystemExit("llama-server did not start in 120 s")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def generate(client: httpx.Client, body: dict[str, Any]) -> tuple[int, float]:
    """(generated tokens, tokens/s) of one request, the engine's own timings."""
    reply = client.post("/v1/chat/completions", json=body, timeout=600)
    reply.raise_for_status()
    timings = reply.json()["timings"]
    count = int(timings["predicted_n"])
    return count, count / (float(timings["predicted_ms"]) / 1000) if count else 0.0


def measure(
    client: httpx.Client,
    schema: Any,
    grammar: str,
    max_tokens: int,
    repeat: int,
    constrained_extra: dict[str, Any],
) -> tuple[int, float, float]:
    """(tokens, constrained t/s, free t/s): medians over ``repeat`` pairs."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": "Give an example JSON value that is valid against this JSON Schema:\n"
            + json.dumps(schema, ensure_ascii=False)[:6000],
        },
    ]
    base = {"messages": messages, "temperature": 0, "cache_prompt": True}
    constrained: list[float] = []
    free: list[float] = []
    count = 0
    for _ in range(repeat):
        count, speed = generate(
            client,
            {**base, **constrained_extra, "grammar": grammar, "max_tokens": max_tokens},
        )
        constrained.append(speed)
        if count:
            _, speed = generate(client, {**base, "max_tokens": count, "ignore_eos": True})
            free.append(speed)
    return count, statistics.median(constrained), statistics.median(free) if free else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--per-subset", type=int, default=35)
    parser.add_argument("--small-subsets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--min-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="at most N schemas (0 = all)")
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument(
        "--no-dry", action="store_true", help="constrained without the DRY sampler (grammarDry)"
    )
    args = parser.parse_args(argv)
    # llama-server's fields for the service's DRY sampler under a grammar.
    constrained_extra = {} if args.no_dry else sampling_params(GRAMMAR_DRY)
    engine_dir = Path(os.environ["MENTATOR_ENGINE_DIR"])
    model = Path(os.environ["MENTATOR_TEST_MODEL"])
    files = sample(args.folder, args.per_subset, args.small_subsets, args.seed)
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no schemas in {args.folder.resolve()}", file=sys.stderr)
        return 2
    print("constrained: grammar" + ("" if args.no_dry else " + DRY sampler (grammarDry)"))
    rows: dict[str, list[tuple[float, float]]] = {}
    skipped = {"refused": 0, "short": 0, "failed": 0}
    with engine(engine_dir, model, args.context) as url, httpx.Client(base_url=url) as client:
        for index, path in enumerate(files, 1):
            subset = path.name.split("__", 1)[0]
            schema = json.loads(path.read_text(encoding="utf-8"))
            try:
                grammar = schema_to_gbnf(schema)
            except SchemaToGrammarError:
                skipped["refused"] += 1
                continue
            try:
                count, constrained, free = measure(
                    client, schema, grammar, args.max_tokens, args.repeat, constrained_extra
                )
            except httpx.HTTPError as error:
                skipped["failed"] += 1
                print(f"[{index}/{len(files)}] {path.name}: failed ({error})", flush=True)
                continue
            if count < args.min_tokens or not free:
                skipped["short"] += 1
                continue
            rows.setdefault(subset, []).append((constrained, free))
            print(
                f"[{index}/{len(files)}] {path.name}: {count} tokens, constrained "
                f"{constrained:.1f} t/s, free {free:.1f} t/s, ratio {constrained / free:.3f}",
                flush=True,
            )
    print(f"\n{'subset':<16}{'n':>4}{'constr. t/s':>13}{'free t/s':>10}{'ratio':>8}")
    everything: list[tuple[float, float]] = []
    for subset in sorted(rows):
        everything += rows[subset]
        print(_row(subset, rows[subset]))
    if everything:
        print(_row("all", everything))
    print(
        f"left out: {skipped['refused']} refused by the converter, {skipped['short']} shorter"
        f" than {args.min_tokens} tokens, {skipped['failed']} failed"
    )
    return 0


def _row(name: str, pairs: list[tuple[float, float]]) -> str:
    constrained = statistics.median(c for c, _ in pairs)
    free = statistics.median(f for _, f in pairs)
    ratio = statistics.median(c / f for c, f in pairs)
    return f"{name:<16}{len(pairs):>4}{constrained:>13.1f}{free:>10.1f}{ratio:>8.3f}"


if __name__ == "__main__":
    sys.exit(main())
