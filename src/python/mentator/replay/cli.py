"""``python -m mentator replay``: re-send the requests stored in a chat log to a service and report
what changed, per request (JSON lines on stdout, or ``--out``) and in total (a short summary on
stderr, and a last JSON line ``{"summary": ...}``).

Exit codes: 0 the replay ran (whatever it found), 1 the database cannot be read, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

import httpx

from mentator.replay.answers import ROUTES, route_of
from mentator.replay.runner import (
    Replayer,
    ReplayOptions,
    ReplayResult,
    Target,
    TargetError,
    summary,
    summary_text,
)
from mentator.storage.chatlog import StoredExchange, read_stored_exchanges
from mentator.storage.database import StorageError

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
API_KEY_ENV = "MENTATOR_REPLAY_API_KEY"
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ms(text: str, now_ms: int) -> int:
    """``--since``: a duration back from now (``90m``, ``24h``, ``7d``), an ISO date or date-time
    (local time unless it names a zone), or milliseconds since the epoch."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now_ms - round(float(relative.group(1)) * _UNIT_S[relative.group(2)] * 1000)
    if text.isdigit():
        return int(text)
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: give a duration back from now (90m, 24h, 7d), an ISO date or "
            "date-time (2025-01-31, 2025-01-31T08:00), or milliseconds since the epoch"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mentator-llm-service replay",
        description="Re-send the requests stored in a chat log (log.savePrompt, and every failed "
        "request) to a service and compare its answers with the stored ones.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the service's database file")
    parser.add_argument("--against", required=True, help="base URL of the service to send to")
    parser.add_argument("--since", help="only requests stored since then (24h, 2025-01-31, ...)")
    parser.add_argument(
        "--route",
        action="append",
        choices=sorted(name for name in ROUTES if not name.startswith("/")),
        help="only requests of this route family (repeatable; default: all)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--rate", type=float, help="requests started per second at most")
    parser.add_argument(
        "--api-key", help=f"API key of the service (or the environment variable {API_KEY_ENV})"
    )
    parser.add_argument("--limit", type=int, help="at most this many requests (oldest first)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request (600)")
    parser.add_argument("--out", type=Path, help="write the JSON lines here instead of stdout")
    return parser


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"ERROR: {message}\n")
    return EXIT_USAGE


def main(
    argv: Sequence[str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    try:
        target = Target.parse(args.against)
        since = since_ms(args.since, time.time_ns() // 1_000_000) if args.since else None
    except (TargetError, argparse.ArgumentTypeError) as error:
        return _usage(parser, str(error))
    if args.concurrency < 1 or (args.rate is not None and args.rate <= 0):
        return _usage(parser, "--concurrency must be 1 or more and --rate more than 0")
    try:
        exchanges = read_stored_exchanges(args.db, since, args.limit)
    except StorageError as error:
        err.write(f"ERROR: {error}\n")
        return EXIT_DATABASE
    if args.route:
        wanted = {ROUTES[name] for name in args.route}
        exchanges = [e for e in exchanges if route_of(_body(e)) in wanted]
    options = ReplayOptions(
        target,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        concurrency=args.concurrency,
        rate=args.rate,
        timeout_s=args.timeout,
    )
    sink = args.out.open("w", encoding="utf-8") if args.out else out
    try:
        results = asyncio.run(_replay(exchanges, options, transport, sink))
        numbers = summary(results)
        sink.write(json.dumps({"summary": numbers}) + "\n")
    finally:
        if args.out:
            sink.close()
    err.write(summary_text(target, numbers))
    return EXIT_OK


def _body(exchange: StoredExchange) -> object:
    try:
        return json.loads(exchange.request)
    except ValueError:
        return None


async def _replay(
    exchanges: list[StoredExchange],
    options: ReplayOptions,
    transport: httpx.AsyncBaseTransport | None,
    sink: TextIO,
) -> list[ReplayResult]:
    replayer = Replayer(options, transport)
    results: list[ReplayResult] = []
    try:
        async for result in replayer.run(exchanges):
            results.append(result)
            sink.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            sink.flush()
    finally:
        await replayer.aclose()
    return results
