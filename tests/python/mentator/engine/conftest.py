"""Fakes for the engine tests.

`fake_engine` is an engine folder whose `llama-server` is a small Python HTTP server that speaks
the parts of llama-server's API the service uses. It is started by the REAL `LlamaServerProcess`,
so the supervision code (spawn, health wait, crash, stop) runs for real. How the fake behaves is
read from the "model file" it is given (JSON), so each test model can misbehave its own way:

    {"load_s": 0.3}                    /health answers 503 that long, then 200
    {"fail_load": "text", "code": 3}   print text to stderr and exit with code while loading
    {"fail_on_gpu": "text"}            fail like that only when GGML_BACKEND_PATH is set
    {"fail_on_gpu": "text", "only": "/cuda/"}   ... and contains that text
    {"generate_s": 2}                  each completion takes that long
    {"ignore_sigterm": true}           only SIGKILL stops it
"""

# ruff: noqa: E501 - FAKE_SERVER_SOURCE is a script kept readable as one block, not reflowed.
from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mentator_testing.recording_logger import RecordingLogger

FAKE_SERVER_SOURCE = r"""
import json, os, signal, sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
def arg(name, default=None):
    return args[args.index(name) + 1] if name in args else default

record_dir = os.environ.get("FAKE_LLAMA_RECORD")
model_path = arg("--model")
config = json.loads(open(model_path).read() or "{}")
if record_dir:
    with open(os.path.join(record_dir, "launch-%d.json" % os.getpid()), "w") as f:
        json.dump({"pid": os.getpid(), "argv": args, "GGML_BACKEND_PATH": os.environ.get("GGML_BACKEND_PATH"),
                   "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"), "cwd": os.getcwd()}, f)

print("load_backend: loaded CPU backend from libggml-cpu-haswell.so", file=sys.stderr, flush=True)
backend_path = os.environ.get("GGML_BACKEND_PATH", "")
if config.get("fail_on_gpu") and backend_path and config.get("only", "") in backend_path:
    print(config["fail_on_gpu"], file=sys.stderr, flush=True)
    sys.exit(1)
if config.get("fail_load"):
    time.sleep(0.1)
    print(config["fail_load"], file=sys.stderr, flush=True)
    sys.exit(config.get("code", 1))

if config.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ready_at = time.monotonic() + float(config.get("load_s", 0))
requests = []

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        print("request: " + (a[0] % a[1:]), flush=True)
    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/health":
            if time.monotonic() < ready_at:
                return self.send_json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
            return self.send_json(200, {"status": "ok"})
        if self.path == "/requests":
            return self.send_json(200, requests)
        self.send_json(404, {"error": {"code": 404, "message": "File Not Found"}})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        requests.append({"path": self.path, "body": body})
        if self.path == "/v1/chat/completions":
            time.sleep(float(config.get("generate_s", 0)))
            user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
            if user == "too long":
                return self.send_json(400, {"error": {"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error"}})
            text = "echo: " + user
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in [text[:6], text[6:]]:
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2}, "timings": {"predicted_n": 2}}
                self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True
                return
            return self.send_json(200, {
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text, "reasoning_content": "thought"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                "timings": {"prompt_n": 5, "predicted_n": 2, "predicted_ms": 1.5}})
        if self.path == "/embedding":
            return self.send_json(200, [{"index": 0, "embedding": [[0.5, 0.25], [1.0, -2.0]]}])
        self.send_json(404, {"error": {"code": 404, "message": "File Not Found"}})

server = ThreadingHTTPServer((arg("--host", "127.0.0.1"), int(arg("--port"))), Handler)
server.daemon_threads = True
print("main: server is listening on http://%s:%s" % server.server_address, file=sys.stderr, flush=True)
server.serve_forever()
"""


def make_fake_engine(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    server = folder / "llama-server"
    server.write_text(f"#!{sys.executable}\n{FAKE_SERVER_SOURCE}", encoding="utf-8")
    server.chmod(server.stat().st_mode | stat.S_IXUSR)
    return folder


@dataclass(frozen=True)
class FakeModel:
    name: str
    path: Path
    size_kb: int
    pooling_type: int | None = None
    layer_count: int | None = None
    context_length: int | None = None
    kv_bytes_per_token: int | None = 1024
    kv_restore_safe: bool = False


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    return make_fake_engine(tmp_path / "engine")


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the fake records each launch (argv, backend environment)."""
    folder = tmp_path / "launches"
    folder.mkdir()
    monkeypatch.setenv("FAKE_LLAMA_RECORD", str(folder))
    return folder


def launches(record_dir: Path) -> list[dict[str, object]]:
    files = sorted(record_dir.glob("launch-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in files]


@pytest.fixture
def recorded_launches(record_dir: Path) -> Callable[[], list[dict[str, object]]]:
    return lambda: launches(record_dir)


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., FakeModel]:
    def make(name: str, size_kb: int = 2048, **behaviour: object) -> FakeModel:
        path = tmp_path / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(behaviour), encoding="utf-8")
        return FakeModel(name, path, size_kb)

    return make


@pytest.fixture
def logger() -> RecordingLogger:
    return RecordingLogger()


@dataclass(frozen=True)
class EngineSettingsStub:
    engine_dir: Path | None
    parallel: int = 2
    threads: int | None = None
    max_loaded_models: int = 1
    memory_budget_mb: int = 0
    vram_budget_mb: int = 0
    keep_alive_sec: int = -1
    swap_grouping: bool = True
    cancel_on_disconnect: bool = True


@pytest.fixture
def settings(fake_engine: Path) -> EngineSettingsStub:
    return EngineSettingsStub(engine_dir=fake_engine)
