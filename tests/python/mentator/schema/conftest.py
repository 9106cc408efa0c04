"""Fixtures of the schema tests: a GBNF recogniser and the real llama-server's grammar parser.

The recogniser itself lives in ``mentator_testing.gbnf_recogniser`` (bench/schema_soundness.py
uses it too); the ``gbnf`` fixture hands out its ``Grammar``.

The ``llama_grammar`` fixture runs the real llama-server (MENTATOR_ENGINE_DIR, the image's
engine) on the test model: every grammar of the corpus must be accepted by llama.cpp's own
parser, and what llama.cpp generates under it must be in the language this recogniser reads
(test_gbnf.py, test_pattern.py).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from mentator_testing.gbnf_recogniser import Grammar


@pytest.fixture
def gbnf() -> Callable[[str], Grammar]:
    return Grammar


@dataclass(frozen=True)
class Generated:
    """What llama-server did with a grammar: its HTTP status, the text, and whether the text
    ended by itself (end of sequence) rather than at the token limit."""

    status: int
    text: str
    complete: bool
    error: str


class LlamaGrammar(Protocol):
    def __call__(self, grammar: str, prompt: str, n_predict: int = 96) -> Generated: ...


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_grammar(engine_dir: Path, test_model: Path) -> Iterator[LlamaGrammar]:
    """``llama_grammar(grammar, prompt, n_predict=96)``: one greedy generation under ``grammar``
    by the real llama-server (started once per module). ``n_predict=0`` only has the grammar
    parsed (llama-server still builds its sampler): the quickest check that it loads."""
    port = _free_port()
    server = subprocess.Popen(
        [
            str(engine_dir / "llama-server"),
            "--model",
            str(test_model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n-gpu-layers",
            "0",
            "--threads",
            "2",
            "--no-webui",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("llama-server did not become ready in 120 s")

        def generate(grammar: str, prompt: str, n_predict: int = 96) -> Generated:
            reply = httpx.post(
                f"{base}/completion",
                json={
                    "prompt": prompt,
                    "grammar": grammar,
                    "n_predict": n_predict,
                    "temperature": 0,
                },
                timeout=120,
            )
            if reply.status_code != 200:
                return Generated(reply.status_code, "", False, reply.text)
            body = reply.json()
            return Generated(200, body["content"], body.get("stop_type") == "eos", "")

        yield generate
    finally:
        server.terminate()
        server.wait(timeout=20)
