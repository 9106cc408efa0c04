"""Benchmark (prints): JSONSchemaBench through a running service's ``/prompt`` — empirical
coverage, compliance and cut-offs per subset, beside the paper's numbers.

A seeded sample (``--per-subset`` schemas of every subset, drawn with ``--seed``; the issue's
sample is 35 of each of the paper's 8 subsets and 10 of GitHub trivial and ultra: ``--per-subset
35 --small-subsets 10``) of ``../shared/schemabench/all/`` (read in place) is sent to ``/prompt``
with ``useGrammar`` and the schema, temperature 0, ``maxTokens`` (512). Each answer is one of:
``valid`` (200, and the data validates against the schema here too), ``invalid`` (a 200 whose
data does NOT validate: must never happen), ``unsupported`` (400 refusing the schema before
generating), ``cut-off`` (400 naming the token limit), ``rejected`` (another 400: the answer
failed validation after generation), ``timeout``, ``server-error`` (5xx).

Declared coverage = not unsupported / all; empirical coverage = valid / all; compliance =
valid / declared (the paper's definitions: its README).

    ./pants run bench/schemabench_model.py -- --url http://127.0.0.1:19777 --model NAME.gguf \\
        [--per-subset 35 --small-subsets 10] [--seed 20] [--max-tokens 512] [--timeout 60] \\
        [--limit N] [--only NAME.json,...] [--show CHARS]

or, with a service started here (MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL, which ./pants
sets; one slot) on the default config plus the keys of ``--config`` (to compare switches):

    ./pants run bench/schemabench_model.py -- --serve [--config '{"cutOffRetry": false}'] ...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema

DEFAULT_FOLDER = Path("../shared/schemabench/all")  # relative to the repository root
# The paper's Table 4 (Llama-3.2-1B-Instruct): empirical coverage / compliance of llama.cpp
# and Guidance.
PAPER: dict[str, tuple[float, float, float, float]] = {
    "Glaiveai2K": (0.95, 0.97, 0.96, 0.98),
    "Github_easy": (0.75, 0.88, 0.86, 0.96),
    "Snowplow": (0.74, 0.81, 0.82, 0.94),
    "Github_medium": (0.57, 0.74, 0.69, 0.87),
    "Kubernetes": (0.76, 0.78, 0.91, 0.92),
    "WashingtonPost": (0.94, 0.97, 0.86, 1.00),
    "Github_hard": (0.39, 0.63, 0.41, 0.69),
    "JsonSchemaStore": (0.38, 0.69, 0.30, 0.88),
}
SMALL_SUBSETS = ("Github_trivial", "Github_ultra")
KINDS = ("valid", "invalid", "unsupported", "cut-off", "rejected", "timeout", "server-error")


def sample(folder: Path, per_subset: int, small: int, seed: int) -> list[Path]:
    by_subset: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*__*.json")):
        by_subset.setdefault(path.name.split("__", 1)[0], []).append(path)
    chosen: list[Path] = []
    rng = random.Random(seed)
    for subset in sorted(by_subset):
        files = by_subset[subset]
        count = small if subset in SMALL_SUBSETS else per_subset
        chosen += rng.sample(files, min(count, len(files)))
    return chosen


def interleaved(files: list[Path]) -> list[Path]:
    """The same files, subsets taken in turn (one of each, then the next of each, ...), so a run
    stopped early (a slow machine) still covers every subset."""
    by_subset: dict[str, list[Path]] = {}
    for path in files:
        by_subset.setdefault(path.name.split("__", 1)[0], []).append(path)
    queues = list(by_subset.values())
    order: list[Path] = []
    for index in range(max((len(queue) for queue in queues), default=0)):
        order += [queue[index] for queue in queues if index < len(queue)]
    return order


def ask(
    client: httpx.Client, model: str, schema: Any, max_tokens: int, timeout_s: float
) -> tuple[str, str]:
    """The answer's kind (``KINDS``) and what the service said (the error's text; a 200's data)."""
    body = {
        "model": model,
        "durationMsec": int(timeout_s * 1000),
        "message": {
            "system": "Answer only with JSON.",
            "user": "Give an example JSON value that is valid against this JSON Schema:\n"
            + json.dumps(schema, ensure_ascii=False)[:6000],
        },
        "options": {"maxTokens": max_tokens, "temperature": 0},
        "format": {"useGrammar": True, "jsonSchema": schema},
    }
    try:
        reply = client.post("/prompt", json=body, timeout=timeout_s + 30)
    except httpx.TimeoutException:
        return "timeout", ""
    text = reply.text
    if reply.status_code >= 500:
        return "server-error", text
    if reply.status_code == 200:
        data = reply.json()["result"]["data"]
        shown = json.dumps(data, ensure_ascii=False)
        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError:
            return "invalid", shown
        except jsonschema.SchemaError:
            return "valid", shown  # the service's validator accepted it; this one cannot judge
        return "valid", shown
    if "on create llama grammar" in text or "on validate response" in text:
        return "unsupported", text
    if "cut off at the token limit" in text:
        return "cut-off", text
    if "timeout" in text.lower() or reply.status_code == 408:
        return "timeout", text
    return "rejected", text


@contextmanager
def served(url: str | None, config: dict[str, object]) -> Iterator[str]:
    """``url``, or (None) a service started here for the run, on the default config plus
    ``config``."""
    if url is not None:
        yield url
        return
    from mentator_testing.service_process import running_service  # only with --serve

    with (
        tempfile.TemporaryDirectory(prefix="schemabench-") as tmp,
        running_service(
            Path(tmp),
            engine_dir=Path(os.environ["MENTATOR_ENGINE_DIR"]),
            model=Path(os.environ["MENTATOR_TEST_MODEL"]),
            parallel=1,
            extra=config,
        ) as service,
    ):
        yield service.base_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running service, e.g. http://127.0.0.1:19777")
    target.add_argument("--serve", action="store_true", help="start a service for the run")
    parser.add_argument(
        "--config", type=json.loads, default={}, help="with --serve: config keys, as JSON"
    )
    parser.add_argument("--model", help="the model file name the service lists (--serve: its)")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--per-subset", type=int, default=35)
    parser.add_argument("--small-subsets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per answer")
    parser.add_argument(
        "--limit", type=int, default=0, help="the first N of the interleaved sample (0 = all)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated file names: only these of the sample"
    )
    parser.add_argument(
        "--show", type=int, default=0, help="print the first N characters of what was answered"
    )
    args = parser.parse_args(argv)
    model = args.model or Path(os.environ.get("MENTATOR_TEST_MODEL", "")).name
    if not model:
        parser.error("--model is required")
    files = interleaved(sample(args.folder, args.per_subset, args.small_subsets, args.seed))
    if args.only:
        wanted = set(args.only.split(","))
        files = [path for path in files if path.name in wanted]
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no schemas in {args.folder.resolve()}", file=sys.stderr)
        return 2
    results: dict[str, Counter[str]] = {}
    seconds: list[float] = []
    print(f"config: {json.dumps(args.config)}" if args.serve else f"service: {args.url}")
    with served(args.url, args.config) as url, httpx.Client(base_url=url) as client:
        for index, path in enumerate(files, 1):
            subset = path.name.split("__", 1)[0]
            schema = json.loads(path.read_text(encoding="utf-8"))
            started = time.perf_counter()
            kind, said = ask(client, model, schema, args.max_tokens, args.timeout)
            seconds.append(time.perf_counter() - started)
            results.setdefault(subset, Counter())[kind] += 1
            print(f"[{index}/{len(files)}] {path.name}: {kind} ({seconds[-1]:.1f} s)", flush=True)
            if args.show:
                print("    " + said[: args.show].replace("\n", " "), flush=True)
    print(
        f"\n{'subset':<16}{'n':>4}"
        + "".join(f"{kind:>13}" for kind in KINDS)
        + f"{'declared':>9}{'empir.':>8}{'compl.':>8}  paper llama.cpp / Guidance (empir./compl.)"
    )
    total: Counter[str] = Counter()
    for subset in sorted(results):
        total += results[subset]
        print(_row(subset, results[subset]))
    print(_row("all", total))
    print(f"time per answer: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    print(f"cut off by the token limit: {total['cut-off']} of {sum(total.values())}")
    return 1 if total["invalid"] or total["server-error"] else 0


def _row(name: str, counts: Counter[str]) -> str:
    n = sum(counts.values())
    declared = n - counts["unsupported"]
    paper = PAPER.get(name)
    paper_text = f"  {paper[0]:.2f}/{paper[1]:.2f} / {paper[2]:.2f}/{paper[3]:.2f}" if paper else ""
    compliance = counts["valid"] / declared if declared else float("nan")
    return (
        f"{name:<16}{n:>4}"
        + "".join(f"{counts[kind]:>13}" for kind in KINDS)
        + f"{declared / n:>9.2f}{counts['valid'] / n:>8.2f}{compliance:>8.2f}{paper_text}"
    )


if __name__ == "__main__":
    sys.exit(main())
