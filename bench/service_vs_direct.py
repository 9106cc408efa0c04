"""Benchmark (prints, never asserts): tokens/s of `/prompt` through the service vs the same
llama-server called directly, same model, prompt and sampling; then the aggregate tokens/s with 1
and 4 concurrent clients, through the service and direct.

The direct llama-server is started with exactly the argv of the service's own child (read from
/proc), on another port, so both sides run the same engine build with the same flags.

    ./pants run bench/service_vs_direct.py -- [--requests 3] [--max-tokens 128]
Uses MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL (./pants sets both to the repository's copies).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

PROMPT = "Write a detailed story about a lighthouse keeper and a storm."
SYSTEM = "You are a helpful assistant."


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


class Side:
    """One way of asking: returns the number of generated tokens of one request."""

    def __init__(self, name: str, ask: Callable[[httpx.Client], int]) -> None:
        self.name, self.ask = name, ask


def run_clients(side: Side, clients: int, requests: int) -> tuple[int, float]:
    def one_client() -> int:
        with httpx.Client(timeout=600) as http:
            return sum(side.ask(http) for _ in range(requests))

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(lambda _: one_client(), range(clients)))
    return tokens, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    args = parser.parse_args()
    engine = Path(os.environ["MENTATOR_ENGINE_DIR"])
    model = Path(os.environ["MENTATOR_TEST_MODEL"])

    tmp = Path(tempfile.mkdtemp(prefix="mentator-bench-"))
    (tmp / "models").mkdir()
    (tmp / "models" / model.name).symlink_to(model)
    port = free_port()
    config = {
        "port": port,
        "host": "127.0.0.1",
        "modelDir": str(tmp / "models"),
        "dbFile": str(tmp / "bench.db"),
        "engineDir": str(engine),
        "parallel": args.parallel,
        "queueLimit": 64,
        "defaultOptions": {},
        "log": {"level": "error", "liveDay": 1, "savePrompt": False},
    }
    (tmp / "conf.jsonc").write_text(json.dumps(config))
    # Absolute: under Pants sys.path holds sandbox-relative entries and the child runs elsewhere.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(str(Path(p).resolve()) for p in sys.path if p)
    )
    log = (tmp / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "mentator", "--conf-use", str(tmp / "conf.jsonc")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    direct: subprocess.Popen[bytes] | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        options = {"maxTokens": args.max_tokens, "temperature": 0, "topK": 1}
        body = {
            "model": model.name,
            "durationMsec": 600_000,
            "message": {"system": SYSTEM, "user": PROMPT},
            "options": options,
        }
        httpx.post(f"{base}/prompt", json=body, timeout=600).raise_for_status()  # loads the model
        engine_argv = child_argv(service.pid)
        print(
            f"model {model.name}; engine {engine}; {args.max_tokens} max tokens; "
            f"{args.requests} request(s) per client; llama-server --parallel {args.parallel}"
        )
        print(f"engine argv: {' '.join(engine_argv[1:])}")

        # 1. Through the service. /prompt reports no token count: keep the texts and count
        #    them with the engine's tokenizer afterwards.
        texts: list[str] = []

        def ask_service(http: httpx.Client) -> int:
            reply = http.post(f"{base}/prompt", json=body)
            reply.raise_for_status()
            texts.append(reply.json()["result"]["data"])
            return 0

        service_runs = measure(Side("service /prompt", ask_service), args.requests, texts)
        # 2. Only one llama-server alive at a time: on a small machine an idle engine's OpenMP
        #    threads spinning beside a busy one would skew the comparison.
        stop(service)
        service = None  # type: ignore[assignment]
        direct_port = free_port()
        direct = subprocess.Popen(
            with_port(engine_argv, direct_port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        dbase = f"http://127.0.0.1:{direct_port}"
        wait_http(f"{dbase}/health")
        direct_body = {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT},
            ],
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "top_k": 1,
        }

        def ask_direct(http: httpx.Client) -> int:
            reply = http.post(f"{dbase}/v1/chat/completions", json=direct_body)
            reply.raise_for_status()
            return int(reply.json()["usage"]["completion_tokens"])

        direct_runs = measure(Side("llama-server direct", ask_direct), args.requests, [])

        def count_tokens(text: str) -> int:
            got = httpx.post(f"{dbase}/tokenize", json={"content": text}, timeout=60).json()
            return len(got["tokens"])

        # Texts of each service run, in order: warm-up + 1-client run, warm-up + 4-client run.
        for clients, (seconds, n_texts) in service_runs.items():
            tokens = sum(count_tokens(t) for t in texts[n_texts[0] : n_texts[1]])
            service_runs[clients] = (seconds, (tokens, 0))
        results: dict[tuple[str, int], float] = {}
        for name, runs in (("service /prompt", service_runs), ("llama-server direct", direct_runs)):
            for clients, (seconds, (tokens, _)) in runs.items():
                results[(name, clients)] = tokens / seconds
                print(
                    f"{clients} client(s)  {name:22s} {tokens:6d} tokens in {seconds:7.2f} s"
                    f" = {tokens / seconds:7.2f} tokens/s"
                )
        for clients in (1, 4):
            ratio = (
                results[("service /prompt", clients)] / results[("llama-server direct", clients)]
            )
            print(f"ratio service/direct, {clients} client(s): {ratio:.3f}")
        return 0
    finally:
        for proc in (direct, service):
            if proc is not None:
                stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(
    side: Side, requests: int, texts: list[str]
) -> dict[int, tuple[float, tuple[int, int]]]:
    """For 1 and 4 clients: (seconds, (tokens, 0)) — or, for the service, (seconds, (first
    text index, end text index)) so the texts can be counted once the service is gone."""
    runs: dict[int, tuple[float, tuple[int, int]]] = {}
    for clients in (1, 4):
        with httpx.Client(timeout=600) as http:
            side.ask(http)  # warm the prompt cache
        first = len(texts)
        tokens, seconds = run_clients(side, clients, requests)
        runs[clients] = (seconds, (first, len(texts)) if texts else (tokens, 0))
    return runs


if __name__ == "__main__":
    sys.exit(main())
