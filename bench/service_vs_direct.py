"""Benchmark (prints, never asserts): what the service costs on top of its engine.

Tokens/s through the service vs the same llama-server called directly (same model, request body,
sampling and argv), with 1, 4 and 16 concurrent clients; then the streaming time to first token
(`/v1/chat/completions`, `stream: true`) through the service and direct, whose difference is what
the service adds. The service side is `/v1/chat/completions` with the very body sent direct
(`--route v1`, the default), or `/prompt` (`--route prompt`, the same prompt and sampling as
options). Tokens are the engine's own counts on both sides: `usage.completion_tokens`, and for
`/prompt` the service's `mentator_tokens_generated_total` counter (re-tokenizing the answer text
would count fewer: the engine's tokens are not always the tokenizer's canonical ones).

A small machine is noisy (this project's is a VM whose speed drifts by 20 % from one minute to
the next), so both sides are measured in turns: each round starts the service, and for each
client count alternates one request per client through the service with the same sent direct,
adding up tokens and seconds per side. "Direct" is the service's own llama-server child, called
on its port (read from /proc): the very process the service uses, so the difference is what the
service adds. `--direct separate` starts a second llama-server with the child's argv instead (the
earlier method): two identical llama-servers differ by up to 3 % in tokens/s for as long as they
run (measured here: four started alike, 30-40 alternating requests each, three runs: one was
the slowest in every run, 1.3-2.0 % behind another), so with a few rounds that luck of the draw
moved the ratio more than the service did. An idle engine sleeps (its threads wait on a
condition after a short spin), so the side not measured costs the other little. The printed
numbers are medians over the rounds.

    ./pants run bench/service_vs_direct.py -- [--rounds 3] [--requests 2] [--max-tokens 128]
                                               [--clients 1,4,16] [--ttft-requests 15]
                                               [--route v1|prompt] [--direct-stream]
                                               [--cancel-on-disconnect true|false]
                                               [--direct child|separate]
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROMPT = "Write a detailed story about a lighthouse keeper and a storm."
SYSTEM = "You are a helpful assistant."
SERVICE, DIRECT = "service", "llama-server direct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout_s} s")


def child_argv(service_pid: int) -> list[str]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            ppid = int(text.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == service_pid and "llama-server" in text.split("(", 1)[1].split(")", 1)[0]:
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            return [part.decode() for part in cmdline if part]
    raise SystemExit("the service has no llama-server child")


def with_port(argv: list[str], port: int) -> list[str]:
    out = list(argv)
    out[out.index("--port") + 1] = str(port)
    return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process itself has used (not its children): what the
    service costs, whatever else the machine is doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generated_tokens(base: str) -> int:
    """The service's count of tokens generated for /prompt (its /metrics)."""
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith('mentator_tokens_generated_total{route="/prompt"}'):
            return int(float(line.split()[-1]))
    return 0


def run_clients(ask: Callable[[httpx.Client], None], clients: int, requests: int) -> float:
    """Seconds for ``clients`` threads to make ``requests`` requests each."""

    def one_client() -> None:
        with httpx.Client(timeout=600) as http:
            for _ in range(requests):
                ask(http)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: one_client(), range(clients)))
    return time.perf_counter() - started


def first_token_ms(http: httpx.Client, url: str, body: dict[str, object]) -> float:
    """Milliseconds from sending a streamed completion to the first event carrying text (an
    opening event with only the role does not count), then the rest of the stream is read.

    The connection is closed after each stream, as the service does towards its engine: this
    llama-server build stops when a connection is reused after a streamed answer."""
    started = time.perf_counter()
    first: float | None = None
    with http.stream(
        "POST", url, json={**body, "stream": True}, headers={"Connection": "close"}
    ) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if first is not None or not line.startswith("data:") or "[DONE]" in line:
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                first = (time.perf_counter() - started) * 1000
    if first is None:
        raise SystemExit(f"{url} streamed no text")
    return first


def streamed_tokens(http: httpx.Client, url: str, body: dict[str, object]) -> int:
    """Tokens of one streamed completion (the engine's count, from the last event's usage),
    read as the service reads its engine: one connection per stream."""
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    with http.stream("POST", url, json=streamed, headers={"Connection": "close"}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("data:") and "[DONE]" not in line:
                usage = json.loads(line[5:]).get("usage")
                if usage:
                    tokens = int(usage["completion_tokens"])
    return tokens


def median_ttft(url: str, body: dict[str, object], requests: int) -> float:
    with httpx.Client(timeout=600) as http:
        first_token_ms(http, url, body)  # warm the prompt cache
        return statistics.median(first_token_ms(http, url, body) for _ in range(requests))


@dataclass
class Results:
    """Per side: tokens/s per client count and TTFT, one value per round."""

    rate: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    ttft: dict[str, list[float]] = field(default_factory=dict)
    # The service process's CPU milliseconds per generated token, per client count.
    cpu_ms_per_token: dict[int, list[float]] = field(default_factory=dict)

    def add_rate(self, side: str, clients: int, tokens: int, seconds: float) -> None:
        self.rate.setdefault((side, clients), []).append(tokens / seconds)
        print(f"  {clients:2d} client(s)  {side:20s} {tokens:6d} tokens in {seconds:7.2f} s")

    def add_ttft(self, side: str, ms: float) -> None:
        self.ttft.setdefault(side, []).append(ms)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients = [int(part) for part in args.clients.split(",") if part.strip()]
        self.engine = Path(os.environ["MENTATOR_ENGINE_DIR"])
        self.model = Path(os.environ["MENTATOR_TEST_MODEL"])
        self.tmp = Path(tempfile.mkdtemp(prefix="mentator-bench-"))
        (self.tmp / "models").mkdir()
        (self.tmp / "models" / self.model.name).symlink_to(self.model)
        self.chat_body: dict[str, object] = {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT},
            ],
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "top_k": 1,
        }
        self.results = Results()
        self.engine_argv: list[str] = []

    def start_service(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        config = {
            "port": port,
            "host": "127.0.0.1",
            "modelDir": str(self.tmp / "models"),
            "dbFile": str(self.tmp / "bench.db"),
            "engineDir": str(self.engine),
            "parallel": self.args.parallel,
            "queueLimit": 64,
            "defaultOptions": {},
            "log": {"level": "error", "liveDay": 1, "savePrompt": False},
        }
        if self.args.cancel_on_disconnect is not None:  # else the service's default
            config["cancelOnDisconnect"] = self.args.cancel_on_disconnect == "true"
        (self.tmp / "conf.jsonc").write_text(json.dumps(config))
        # Absolute: under Pants sys.path holds sandbox-relative entries; the child runs elsewhere.
        path = os.pathsep.join(str(Path(p).resolve()) for p in sys.path if p)
        service = subprocess.Popen(
            [sys.executable, "-m", "mentator", "--conf-use", str(self.tmp / "conf.jsonc")],
            stdout=(self.tmp / "service.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=path),
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        return service, base

    def start_direct(self) -> tuple[subprocess.Popen[bytes], str]:
        """llama-server alone, with the argv the service gave its child (another port)."""
        port = free_port()
        direct = subprocess.Popen(
            with_port(self.engine_argv, port),
            stdout=(self.tmp / "direct.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/health")
        except BaseException:
            stop(direct)
            raise
        return direct, base

    def round(self) -> None:
        """One round: the service and llama-server direct side by side, measured in turns."""
        service, base = self.start_service()
        direct: subprocess.Popen[bytes] | None = None
        chat = {**self.chat_body, "model": self.model.name}
        prompt = {
            "model": self.model.name,
            "durationMsec": 600_000,
            "message": {"system": SYSTEM, "user": PROMPT},
            "options": {"maxTokens": self.args.max_tokens, "temperature": 0, "topK": 1},
        }
        counted: list[int] = []
        direct_counted: list[int] = []
        direct_base = ""

        def ask_v1(http: httpx.Client) -> None:
            reply = http.post(f"{base}/v1/chat/completions", json=chat)
            reply.raise_for_status()
            counted.append(int(reply.json()["usage"]["completion_tokens"]))

        def ask_prompt(http: httpx.Client) -> None:
            http.post(f"{base}/prompt", json=prompt).raise_for_status()

        def ask_direct(http: httpx.Client) -> None:
            url = f"{direct_base}/v1/chat/completions"
            if self.args.direct_stream:
                direct_counted.append(streamed_tokens(http, url, self.chat_body))
                return
            reply = http.post(url, json=self.chat_body)
            reply.raise_for_status()
            direct_counted.append(int(reply.json()["usage"]["completion_tokens"]))

        by_prompt = self.args.route == "prompt"
        ask = ask_prompt if by_prompt else ask_v1
        try:
            with httpx.Client(timeout=600) as http:
                ask(http)  # loads the model and warms the prompt cache
            self.engine_argv = child_argv(service.pid)
            if self.args.direct == "separate":
                direct, direct_base = self.start_direct()
            else:  # the service's own child
                port = self.engine_argv[self.engine_argv.index("--port") + 1]
                direct_base = f"http://127.0.0.1:{port}"
            with httpx.Client(timeout=600) as http:
                ask_direct(http)  # warm the prompt cache, as the service's model load did
            for clients in self.clients:
                tokens = direct_tokens = 0
                seconds = direct_seconds = cpu = 0.0
                # Turns of one request per client, service then direct: a drift of the
                # machine's speed (a noisy neighbour, a VM's steal) hits both sides alike.
                for _ in range(self.args.requests):
                    counted.clear()
                    direct_counted.clear()
                    before = generated_tokens(base) if by_prompt else 0
                    cpu_before = cpu_seconds(service.pid)
                    seconds += run_clients(ask, clients, 1)
                    cpu += cpu_seconds(service.pid) - cpu_before
                    tokens += generated_tokens(base) - before if by_prompt else sum(counted)
                    direct_seconds += run_clients(ask_direct, clients, 1)
                    direct_tokens += sum(direct_counted)
                self.results.add_rate(SERVICE, clients, tokens, seconds)
                self.results.add_rate(DIRECT, clients, direct_tokens, direct_seconds)
                self.results.cpu_ms_per_token.setdefault(clients, []).append(
                    cpu * 1000 / max(tokens, 1)
                )
                print(f"  {'':31s} service process CPU {cpu:7.2f} s")
            short = {**self.chat_body, "max_tokens": 16}
            self.results.add_ttft(
                SERVICE,
                median_ttft(
                    f"{base}/v1/chat/completions",
                    {**short, "model": self.model.name},
                    self.args.ttft_requests,
                ),
            )
            self.results.add_ttft(
                DIRECT,
                median_ttft(f"{direct_base}/v1/chat/completions", short, self.args.ttft_requests),
            )
        finally:
            stop(service)
            if direct is not None:
                stop(direct)

    def report(self) -> None:
        rounds = self.args.rounds
        print(f"\nmedians over {rounds} round(s):")
        for clients in self.clients:
            services = self.results.rate[(SERVICE, clients)]
            directs = self.results.rate[(DIRECT, clients)]
            ratios = [s / d for s, d in zip(services, directs, strict=True)]
            print(
                f"{clients:2d} client(s): service {statistics.median(services):7.2f} tokens/s,"
                f" direct {statistics.median(directs):7.2f} tokens/s; ratio service/direct per"
                f" round {' '.join(f'{r:.3f}' for r in ratios)}, median"
                f" {statistics.median(ratios):.3f}"
            )
            cpu = self.results.cpu_ms_per_token[clients]
            print(
                f"{'':13s}service process CPU per generated token {statistics.median(cpu):.3f} ms"
                f" (per round {' '.join(f'{c:.3f}' for c in cpu)})"
            )
        added = [
            s - d
            for s, d in zip(self.results.ttft[SERVICE], self.results.ttft[DIRECT], strict=True)
        ]
        print(
            f"time to first streamed token (median of {self.args.ttft_requests} per round):"
            f" service {statistics.median(self.results.ttft[SERVICE]):.1f} ms,"
            f" direct {statistics.median(self.results.ttft[DIRECT]):.1f} ms; added by the service"
            f" per round {' '.join(f'{a:+.1f}' for a in added)} ms,"
            f" median {statistics.median(added):+.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="service+direct rounds (median)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument(
        "--ttft-requests", type=int, default=15, help="streamed requests per TTFT median"
    )
    parser.add_argument(
        "--route", choices=("v1", "prompt"), default="v1", help="the service's route measured"
    )
    parser.add_argument(
        "--direct-stream",
        action="store_true",
        help="the direct side reads its answers as streams, as the service reads its engine"
        " (default: whole answers)",
    )
    parser.add_argument(
        "--cancel-on-disconnect",
        choices=("true", "false"),
        default=None,
        help="the service's config key of that name (default: the service's default, false:"
        " whole answers asked in one piece; true: read as streams)",
    )
    parser.add_argument(
        "--direct",
        choices=("child", "separate"),
        default="child",
        help="the direct side: the service's own llama-server child (default), or a second"
        " llama-server started with its argv",
    )
    bench = Bench(parser.parse_args())
    args = bench.args
    direct_side = "streamed" if args.direct_stream else "whole"
    print(
        f"model {bench.model.name}; engine {bench.engine}; {args.max_tokens} max tokens;"
        f" {args.requests} request(s) per client; llama-server --parallel {args.parallel};"
        f" {args.rounds} round(s); service route {args.route}; cancelOnDisconnect"
        f" {args.cancel_on_disconnect or '(the default)'};"
        f" direct side {direct_side}, {args.direct}",
        flush=True,
    )
    try:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}:", flush=True)
            bench.round()
            if round_no == 1:
                print(f"  engine argv: {' '.join(bench.engine_argv[1:])}", flush=True)
    except BaseException:
        print(f"benchmark failed; the service's and llama-server's logs are in {bench.tmp}")
        raise
    bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
