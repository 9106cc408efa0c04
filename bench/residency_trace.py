"""Benchmark (prints, never asserts): several models resident at once (issue 21).

Three "models" are links to the test model under three names (different models to the service).
A trace of requests over them (fixed seed: a model is asked again with probability ``--stay``,
else one of the others, A-B-A-A-C-B-...) is sent by 4 clients, each taking the trace's next
request when it is free, to a service started with:

  one model       maxLoadedModels 1: the original's behaviour (a request for another model
                  replaces the loaded one)
  residency       maxLoadedModels 3: all three stay loaded
  forced swaps    maxLoadedModels 2: plain LRU order (swapGrouping false), then with the
                  anti-thrash grouping (swapGrouping true, the default)

The clients form a closed loop (each sends its next request when its answer came), so at most
4 requests are outstanding at once. Grouping still has room to work: requests for resident
models are answered in milliseconds, so while a swap waits the clients run ahead through the
trace and the requests for the missing model pile up (up to 4) for one load. The decision rule is
simulated on this same trace in tests/python/mentator/engine/test_swap_grouping.py (no engine):
17 loads in plain LRU order vs 7 grouped for 60 requests, 19 vs 19 with 1 client, 8 vs 5 with 8.

Printed per setting: the loads (answers with ``loadModelStatus: "load"``) and the total time;
medians over ``--rounds``. Then the A/B alternation: ``--ab-requests`` sequential short requests
alternating two resident models vs the same number to one model (p50 latency of each).

Warm swaps (``--warm-tokens``, 0 = skip): a chat of about that many tokens is prefilled on model
A (cold: its time to first token, ``max_tokens`` 1, model already loaded), A is evicted by a
request for B (``maxLoadedModels`` 1), and the same chat plus one more sentence is sent to A
again: its time to first token includes the reload, with ``warmSwapMb`` on and off.

    ./pants run bench/residency_trace.py -- [--requests 60] [--clients 4] [--rounds 3]
                                            [--ab-requests 20] [--seed 21] [--max-tokens 8]
Uses MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL (./pants sets both to the repository's copies).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mentator_testing.model_trace import model_trace

NAMES = ("model-a", "model-b", "model-c")
CONTEXT = 1024


@dataclass(frozen=True)
class Setting:
    title: str
    max_loaded: int
    grouping: bool = True
    warm_mb: int = 0


SETTINGS = (
    Setting("one model (maxLoadedModels 1)", 1),
    Setting("residency (maxLoadedModels 3)", 3),
    Setting("forced swaps, plain LRU (maxLoadedModels 2)", 2, grouping=False),
    Setting("forced swaps, grouping (maxLoadedModels 2)", 2),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trace(requests: int, seed: int, stay: float) -> list[str]:
    """Model names in request order: the same model again with probability ``stay``."""
    return model_trace(NAMES, requests, seed, stay)


class Service:
    def __init__(
        self, folder: Path, engine: Path, setting: Setting, parallel: int, log_dir: Path | None
    ) -> None:
        max_loaded = setting.max_loaded
        self.folder = folder
        logs = log_dir or folder
        port = free_port()
        config = {
            "port": port,
            "host": "127.0.0.1",
            "modelDir": str(folder / "models"),
            "dbFile": str(folder / f"bench-{max_loaded}.db"),
            "engineDir": str(engine),
            "parallel": parallel,
            "queueLimit": 256,
            "maxLoadedModels": max_loaded,
            "swapGrouping": setting.grouping,
            "warmSwapMb": setting.warm_mb,
            "defaultOptions": {},
            "log": {"level": "debug" if log_dir else "error", "liveDay": 1, "savePrompt": False},
        }
        conf = folder / f"conf-{max_loaded}-{setting.grouping}-{setting.warm_mb}.jsonc"
        conf.write_text(json.dumps(config))
        # Absolute: under Pants sys.path holds sandbox-relative entries; the child runs elsewhere.
        path = os.pathsep.join(str(Path(p).resolve()) for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mentator", "--conf-use", str(conf)],
            stdout=(logs / f"service-{max_loaded}-{setting.grouping}.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=path),
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("the service did not become ready in 120 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ask(http: httpx.Client, base: str, model: str, max_tokens: int) -> tuple[str, float]:
    """One short /prompt: its loadModelStatus and seconds."""
    body = {
        "model": model,
        "contextSize": CONTEXT,
        "durationMsec": 600_000,
        "message": {"user": "Say hello."},
        "options": {"maxTokens": max_tokens, "temperature": 0, "topK": 1, "seed": 1},
    }
    started = time.monotonic()
    reply = http.post(f"{base}/prompt", json=body)
    reply.raise_for_status()
    return str(reply.json()["result"]["loadModelStatus"]), time.monotonic() - started


def run_trace(base: str, names: list[str], clients: int, max_tokens: int) -> tuple[int, float]:
    """(loads, total seconds) of the trace sent by ``clients`` clients in trace order."""
    lock = threading.Lock()
    position = iter(names)
    loads = 0
    failures: list[BaseException] = []

    def client() -> None:
        nonlocal loads
        with httpx.Client(timeout=900) as http:
            while True:
                with lock:
                    name = next(position, None)
                if name is None:
                    return
                try:
                    status, _ = ask(http, base, name, max_tokens)
                except httpx.HTTPError as error:
                    failures.append(error)
                    return
                if status == "load":
                    with lock:
                        loads += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a request failed: {failures[0]}")
    return loads, time.monotonic() - started


def alternation(base: str, requests: int, max_tokens: int) -> tuple[float, float]:
    """p50 seconds of sequential requests: one model only, then A/B alternating (both loaded)."""
    with httpx.Client(timeout=900) as http:
        for name in NAMES[:2]:
            ask(http, base, name, max_tokens)  # both resident, prompt caches warm
        single = [ask(http, base, NAMES[0], max_tokens)[1] for _ in range(requests)]
        both = [ask(http, base, NAMES[index % 2], max_tokens)[1] for index in range(requests)]
    return statistics.median(single), statistics.median(both)


def first_token_s(
    http: httpx.Client, base: str, model: str, messages: list[dict[str, str]]
) -> float:
    """Seconds until a one-token answer (the prefill, plus a load when the model is not in)."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0,
        "keep_alive": -1,
    }
    started = time.monotonic()
    http.post(f"{base}/v1/chat/completions", json=body).raise_for_status()
    return time.monotonic() - started


def warm_swap(folder: Path, engine: Path, tokens: int, warm_mb: int) -> tuple[float, float]:
    """(cold prefill s, resumed after evict + reload s) of a chat of about ``tokens`` tokens."""
    setting = Setting(f"warm {warm_mb}", 1, warm_mb=warm_mb)
    service = Service(folder, engine, setting, 1, None)
    facts = " ".join(
        f"Fact {index}: the keeper logged ship {index * 7} at dawn."
        for index in range(tokens // 16)
    )
    chat = [{"role": "user", "content": facts + " Which ship was logged for fact 3?"}]
    a, b = f"{NAMES[0]}.gguf", f"{NAMES[1]}.gguf"
    try:
        with httpx.Client(timeout=1800) as http:
            # The context must hold the chat (the default is the model's trained one).
            first_token_s(http, service.base, a, [{"role": "user", "content": "Hi"}])
            cold = first_token_s(http, service.base, a, chat)
            first_token_s(http, service.base, b, [{"role": "user", "content": "Hi"}])
            more = [*chat, {"role": "assistant", "content": "Ship 21."}]
            more.append({"role": "user", "content": "And for fact 4?"})
            resumed = first_token_s(http, service.base, a, more)
    finally:
        service.stop()
    return cold, resumed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ab-requests", type=int, default=20)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--stay", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--only", type=int, choices=(1, 2, 3), help="run only this maxLoadedModels setting"
    )
    parser.add_argument("--log-dir", type=Path, help="keep the services' logs (debug) here")
    parser.add_argument("--warm-tokens", type=int, default=4000, help="0 = skip warm swaps")
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up as they happen
    engine = Path(os.environ["MENTATOR_ENGINE_DIR"])
    model = Path(os.environ["MENTATOR_TEST_MODEL"]).resolve()
    names = trace(args.requests, args.seed, args.stay)
    print(f"trace ({len(names)} requests, seed {args.seed}):", "".join(n[-1] for n in names))
    results: dict[str, list[tuple[int, float]]] = {s.title: [] for s in SETTINGS}
    ab: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="mentator-residency-") as tmp:
        folder = Path(tmp)
        (folder / "models").mkdir()
        for name in NAMES:
            (folder / "models" / f"{name}.gguf").symlink_to(model)
        for round_number in range(1, args.rounds + 1):
            for setting in SETTINGS:
                if args.only is not None and setting.max_loaded != args.only:
                    continue
                service = Service(folder, engine, setting, args.parallel, args.log_dir)
                try:
                    loads, seconds = run_trace(
                        service.base, [f"{n}.gguf" for n in names], args.clients, args.max_tokens
                    )
                    results[setting.title].append((loads, seconds))
                    print(f"round {round_number}: {setting.title}: {loads} loads, {seconds:.1f} s")
                    if setting.max_loaded == 3 and args.ab_requests:
                        ab.append(alternation(service.base, args.ab_requests, args.max_tokens))
                finally:
                    service.stop()
        warm: list[tuple[str, float, float]] = []
        if args.warm_tokens:
            for warm_mb in (2048, 0):
                cold, resumed = warm_swap(folder, engine, args.warm_tokens, warm_mb)
                warm.append(("warmSwapMb 2048" if warm_mb else "warm swaps off", cold, resumed))
    print(f"\nmedians over {args.rounds} round(s), {args.clients} clients:")
    print(f"{'setting':48} {'loads':>6} {'total s':>8}")
    for title, runs in results.items():
        if runs:
            median_loads = statistics.median(run[0] for run in runs)
            median_s = statistics.median(run[1] for run in runs)
            print(f"{title:48} {median_loads:>6g} {median_s:>8.1f}")
    if ab:
        single = statistics.median(pair[0] for pair in ab)
        both = statistics.median(pair[1] for pair in ab)
        print(
            f"\nA/B alternation, both resident: p50 {both * 1000:.0f} ms vs one model"
            f" {single * 1000:.0f} ms ({both / single:.2f}x)"
        )
    for title, cold, resumed in warm:
        print(
            f"{title}: cold prefill of the chat {cold:.2f} s; after evict + reload"
            f" {resumed:.2f} s ({resumed / cold:.0%} of cold)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
