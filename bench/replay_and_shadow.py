"""Benchmark (prints, never asserts): replay fidelity and the cost of shadow traffic (issue 24).

``replay``: a recording service (savePrompt on) answers ``--requests`` varied requests at
temperature 0 over the three stored routes (/prompt, /v1/chat/completions whole and streamed,
/v1/completions); its chat log is then replayed with ``python -m mentator replay`` against
(1) a fresh service with the same code, engine and model — the share of identical answers — and
(2) a candidate: ``--candidate-model FILE`` when given, else the same model under a changed
configuration (default maxTokens 4 instead of 48, which the requests without their own maxTokens
feel) — the report's differences. Prints the replay's own summary lines and counts.

``shadow``: the primary's throughput (engine tokens/s, ``--clients`` clients times ``--requests``
requests) with shadowing off and with ``shadowPercent`` 10, two primaries side by side measured
in turns (see ``run_shadow``; medians of ``--rounds``), and whether the primary's answers are
byte-identical with and without it (the answer text of every request, in order). The shadow's
target (``--candidate``): ``stub`` (the default) is a tiny HTTP server in this process that
answers every copy at once with a fixed answer, so the primary does all of its shadow work —
sampling, queueing, sending, comparing, the JSON diff, the database row — without a second
engine competing for this machine's CPU (a candidate on another machine costs the primary the
same); ``local`` starts a second service here
(its engine shares the CPU: that cost is the machine's, not the shadow's); a URL names a running
candidate (put it on another machine). The candidate is warmed before the rounds.

    ./pants run bench/replay_and_shadow.py -- replay [--requests 200] [--candidate-model FILE]
    ./pants run bench/replay_and_shadow.py -- shadow [--rounds 3] [--clients 2] [--requests 10]
                                                     [--candidate stub|local|URL]
Uses MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL (./pants sets both to the repository's copies).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

TOPICS = ["the sea", "a red fox", "winter", "a small robot", "bread", "a lighthouse", "rain",
          "a violin", "the moon", "a market"]  # fmt: skip
SCHEMA = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 12}},
          "required": ["word"]}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    base: str
    process: subprocess.Popen[bytes]
    db: Path


def _python_path() -> str:
    # Absolute: under Pants sys.path holds sandbox-relative entries; the child runs elsewhere.
    return os.pathsep.join(str(Path(p).resolve()) for p in sys.path if p)


@contextmanager
def service(folder: Path, model: Path, **extra: Any) -> Iterator[Service]:
    """A service (its own llama-server) on a free port, stopped (SIGTERM) on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    link = folder / "models" / model.name
    if not link.exists():
        link.symlink_to(model)
    port = free_port()
    config = {
        "port": port,
        "host": "127.0.0.1",
        "modelDir": str(folder / "models"),
        "dbFile": str(folder / "bench.db"),
        "engineDir": os.environ["MENTATOR_ENGINE_DIR"],
        "parallel": 1,
        "queueLimit": 256,
        "defaultOptions": {},
        "log": {"level": "error", "liveDay": 1, "savePrompt": True},
        **extra,
    }
    (folder / "conf.jsonc").write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "mentator", "--conf-use", str(folder / "conf.jsonc")],
        stdout=(folder / "service.log").open("ab"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=_python_path()),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"service did not start: {(folder / 'service.log').read_text()}")
            time.sleep(0.2)
        yield Service(base, process, folder / "bench.db")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def requests_for(model: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` varied requests over the stored routes, all at temperature 0. Two in five name
    no maxTokens (a fifth of the /prompt ones, and /v1/completions), so the service's default
    applies and a configuration change shows."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    for index in range(count):
        topic = TOPICS[index % len(TOPICS)]
        words = f"Write one short sentence about {topic} (variant {index // len(TOPICS)})."
        options: dict[str, Any] = {"temperature": 0, "seed": 7}
        if index % 5:
            options["maxTokens"] = 24
        kind = index % 5
        if kind in (0, 1):
            body: dict[str, Any] = {"model": model, "message": {"user": words},
                                    "durationMsec": 300000, "options": options}  # fmt: skip
            if kind == 1:
                body["message"] = {"user": f"Give one word for {topic} as JSON."}
                body["format"] = {"useGrammar": True, "jsonSchema": SCHEMA}
            bodies.append(("/prompt", body))
        elif kind in (2, 3):
            chat: dict[str, Any] = {"model": model, "temperature": 0, "seed": 7,
                                    "messages": [{"role": "user", "content": words}]}  # fmt: skip
            if "maxTokens" in options:
                chat["max_tokens"] = options["maxTokens"]
            if kind == 3:
                chat["stream"] = True
            bodies.append(("/v1/chat/completions", chat))
        else:
            text = {"model": model, "prompt": f"About {topic}:", "temperature": 0, "seed": 7}
            bodies.append(("/v1/completions", text))
    return bodies


def answer_text(route: str, reply: httpx.Response, streamed: bool) -> str:
    """The answer's bytes that must not change (ids, timings and durations do)."""
    if streamed:
        pieces = []
        for line in reply.text.splitlines():
            if line.startswith("data:") and "[DONE]" not in line:
                for choice in json.loads(line[5:]).get("choices") or []:
                    pieces.append((choice.get("delta") or {}).get("content") or "")
        return "".join(pieces)
    body = reply.json()
    if route == "/prompt":
        return json.dumps(body.get("result", {}).get("data"), ensure_ascii=False)
    choice = (body.get("choices") or [{}])[0]
    return str(choice.get("text") or (choice.get("message") or {}).get("content") or "")


def send_all(base: str, bodies: list[tuple[str, dict[str, Any]]], clients: int) -> list[str]:
    """Every request (``clients`` at a time); the answers' texts in request order."""

    def one(item: tuple[str, dict[str, Any]]) -> str:
        route, body = item
        with httpx.Client(timeout=600) as http:
            reply = http.post(f"{base}{route}", json=body)
            if reply.status_code != 200:
                return f"<{reply.status_code}>"
            return answer_text(route, reply, bool(body.get("stream")))

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, bodies))


class _StubHandler(BaseHTTPRequestHandler):
    """Any POST: a fixed answer in the shape of its route (at once, no engine)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/prompt":
            body: dict[str, Any] = {"result": {"data": "stub"}}
        else:
            body = {"choices": [{"index": 0, "text": "stub", "message": {"content": "stub"}}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # - the base's name
        pass


@contextmanager
def stub_candidate() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def generated(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mentator_generation_tokens_total{"))  # fmt: skip


def replay(db: Path, against: str) -> dict[str, Any]:
    out = db.parent / f"replay-{free_port()}.jsonl"
    command = [sys.executable, "-m", "mentator", "replay", "--db", str(db), "--against", against,
               "--concurrency", "1", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=_python_path()), check=False)  # fmt: skip
    print(done.stderr.strip())
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    summary: dict[str, Any] = lines[-1]["summary"]
    summary["lines"] = lines[:-1]
    return summary


def run_replay(args: argparse.Namespace, model: Path, tmp: Path) -> None:
    bodies = requests_for(model.name, args.requests)
    base_options = {"defaultOptions": {"maxTokens": 48}}
    with service(tmp / "recording", model, **base_options) as recording:
        started = time.perf_counter()
        send_all(recording.base, bodies, 1)
        print(f"recorded {len(bodies)} requests in {time.perf_counter() - started:.1f} s")
        db = recording.db
    print("\n== replay against the same code, engine and model")
    with service(tmp / "same", model, **base_options) as same:
        numbers = replay(db, same.base)
    print(f"identical {numbers['identical']} of {numbers['total']}"
          f" ({(numbers['identicalShare'] or 0) * 100:.1f} %)")  # fmt: skip
    if args.candidate_model:
        label, candidate_model, options = (
            f"model {args.candidate_model.name}",
            args.candidate_model,
            base_options,
        )
    else:
        label, candidate_model = "the same model, default maxTokens 4", model
        options = {"defaultOptions": {"maxTokens": 4}}
    print(f"\n== replay against a candidate ({label})")
    with service(tmp / "candidate", candidate_model, **options) as candidate:
        numbers = replay(db, candidate.base)
    changed = [line for line in numbers["lines"] if line["outcome"] == "different"]
    print(f"different {len(changed)} of {numbers['total']}; first differences:")
    for line in changed[:3]:
        print("  ", json.dumps({"id": line["id"], "route": line["route"], "diff": line["diff"]},
                               ensure_ascii=False)[:300])  # fmt: skip


def shadow_settled(base: str, deadline_s: float = 60.0) -> None:
    """Wait until the primary's shadow has sent and compared every copy it took.

    Done when no copy waits (``mentator_shadow_queued`` 0) and the compared and dropped copies
    stop changing; a primary with shadowing off answers the same poll at once (one GET of
    /metrics each turn on both sides, so the poll costs the two sides alike).
    """
    last: float | None = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics", timeout=30).text
        queued = done = 0.0
        for line in text.splitlines():
            if line.startswith("mentator_shadow_queued"):
                queued += float(line.rsplit(" ", 1)[1])
            elif line.startswith("mentator_shadow_") and "_total" in line.split(" ", 1)[0]:
                done += float(line.rsplit(" ", 1)[1])
        if queued == 0 and done == last:
            return
        last = done
        time.sleep(0.05 if queued or last is None else 0.02)


def run_shadow(args: argparse.Namespace, model: Path, tmp: Path) -> None:
    """Both primaries (shadowing off, and at 10 %) run at once and are measured in turns.

    This machine's speed drifts by up to 20 % from one minute to the next, more than the effect
    sought, so the two are not measured one after the other: each turn sends ``--clients``
    requests to one primary, then the same requests to the other (which goes first alternates),
    and a turn's time runs until its answers are in and the 10 % side has sent and compared its
    copies (its whole shadow work is charged to it, none of it overlaps the other side's turn).
    """
    bodies = requests_for(model.name, args.clients * args.requests)
    modes = ("off", "10 %")

    @contextmanager
    def candidate() -> Iterator[str]:
        if args.candidate == "stub":
            with stub_candidate() as url:
                yield url
        elif args.candidate == "local":
            with service(tmp / "shadow-candidate", model) as local:
                yield local.base
        else:
            yield args.candidate

    ratios: list[float] = []
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    answers: list[list[str]] = []
    with candidate() as target:
        send_all(target, bodies[:2], 1)  # a cold candidate loads its model now, not in a round
        notes = {"stub": " (stub: answers at once)", "local": " (a service here: shares the CPU)"}
        print(f"shadow target {target}{notes.get(args.candidate, '')}")
        for round_ in range(args.rounds):
            base_options: dict[str, Any] = {"defaultOptions": {"maxTokens": 48}}
            shadowing = {"shadowUrl": target, "shadowPercent": 10}
            with (
                service(tmp / f"off-{round_}", model, **base_options) as off,
                service(tmp / f"on-{round_}", model, **base_options, **shadowing) as on,
            ):
                primaries = {"off": off, "10 %": on}
                seconds = dict.fromkeys(modes, 0.0)
                texts: dict[str, list[str]] = {mode: [] for mode in modes}
                before = {}
                for mode, primary in primaries.items():
                    send_all(primary.base, bodies[:2], 1)  # load the model, warm up
                    shadow_settled(primary.base)
                    before[mode] = generated(primary.base)
                for turn, first in enumerate(range(0, len(bodies), args.clients)):
                    chunk = bodies[first : first + args.clients]
                    order = modes if turn % 2 == 0 else modes[::-1]
                    for mode in order:
                        base = primaries[mode].base
                        started = time.perf_counter()
                        texts[mode] += send_all(base, chunk, args.clients)
                        shadow_settled(base)
                        seconds[mode] += time.perf_counter() - started
                rate = {
                    mode: (generated(p.base) - before[mode]) / seconds[mode]
                    for mode, p in primaries.items()
                }
                shadow = httpx.get(f"{on.base}/state/activity").json()["shadow"]
            for mode in modes:
                rates[mode].append(rate[mode])
            ratios.append(rate["10 %"] / rate["off"])
            answers.extend(texts.values())
            print(
                f"  round {round_ + 1}: off {rate['off']:.2f} tokens/s, 10 % shadow"
                f" {rate['10 %']:.2f} tokens/s, ratio {ratios[-1]:.3f}; shadow {shadow}"
            )
    off_rate, on_rate = statistics.median(rates["off"]), statistics.median(rates["10 %"])
    ratio = statistics.median(ratios)
    print(
        f"\nmedian tokens/s: off {off_rate:.2f}, 10 % shadow {on_rate:.2f};"
        f" median ratio 10 %/off {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)"
    )
    same = all(run == answers[0] for run in answers)
    print(f"primary's answers byte-identical across all {len(answers)} runs: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("replay")
    one.add_argument("--requests", type=int, default=200)
    one.add_argument("--candidate-model", type=Path)
    two = sub.add_parser("shadow")
    two.add_argument("--rounds", type=int, default=3)
    two.add_argument("--clients", type=int, default=2)
    two.add_argument("--requests", type=int, default=10, help="per client")
    two.add_argument(
        "--candidate", default="stub", help="stub (default), local, or a candidate's base URL"
    )
    args = parser.parse_args()
    model = Path(os.environ["MENTATOR_TEST_MODEL"])
    tmp = Path(tempfile.mkdtemp(prefix="mentator-bench-"))
    if args.mode == "replay":
        run_replay(args, model, tmp)
    else:
        run_shadow(args, model, tmp)


if __name__ == "__main__":
    main()
