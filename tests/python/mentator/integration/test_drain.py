"""The shutdown drain of the real service (`python -m mentator` over llama-server and SmolLM2):
SIGTERM while a stream is being generated. The stream ends with its last token and ``[DONE]``;
meanwhile /health answers 503 "draining" and a new request 503 with Retry-After; the process
exits 0. With a short grace, a stream still generating when it ends gets an error event, and
the log says so.

The answers are forced long with a grammar (a string of at least N characters), so the stream is
certainly still running when the signal comes (2000 characters, the most the grammar converter
takes, are some 500 tokens: seconds of SmolLM2 on a CPU, against a grace of 0.5 s)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mentator_testing.service_process import RunningService, running_service


def _long_chat(model_name: str, min_length: int, max_length: int) -> dict[str, Any]:
    story = {"type": "string", "minLength": min_length, "maxLength": max_length}
    schema = {
        "type": "object",
        "properties": {"story": story},
        "required": ["story"],
    }
    return {
        "model": model_name,
        "messages": [{"role": "user", "content": "Tell a long story about a lighthouse."}],
        "max_tokens": 2 * max_length,
        "temperature": 0,
        "stream": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }


class StreamReader(threading.Thread):
    """Reads one streamed chat completion; ``started`` is set at the first content token."""

    def __init__(self, service: RunningService, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.body = body
        self.started = threading.Event()
        self.events: list[str] = []
        self.status: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.service.base_url, timeout=120) as http,
                http.stream("POST", "/v1/chat/completions", json=self.body) as response,
            ):
                self.status = response.status_code
                if self.status != 200:
                    self.events.append(response.read().decode())
                    return
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    self.events.append(line[len("data: ") :])
                    if '"content"' in line:
                        self.started.set()
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.started.set()

    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(event) for event in self.events if event != "[DONE]"]


def _exit_code(service: RunningService) -> int:
    try:
        return service.process.wait(timeout=60)
    except Exception as error:
        raise AssertionError(f"no exit after SIGTERM\n{service.log_text()}") from error


def test_a_stream_in_flight_at_sigterm_ends_with_its_last_token_and_done(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    # A long grace: on a loaded 2-core machine the stream can take over a minute to finish.
    extra: dict[str, object] = {"drainGraceMsec": 150000, "drainNoticeMsec": 3000}
    with running_service(tmp_path, engine_dir=engine_dir, model=test_model, extra=extra) as svc:
        reader = StreamReader(svc, _long_chat(test_model.name, 300, 400))
        reader.start()
        assert reader.started.wait(120), svc.log_text()
        assert reader.error is None, reader.error
        at_signal = len(reader.events)
        svc.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with httpx.Client(base_url=svc.base_url, timeout=30) as http:
            health = http.get("/health")
            refused = http.post(
                "/prompt",
                json={"model": test_model.name, "message": {"user": "hi"}, "durationMsec": 9000},
            )
            refused_v1 = http.post(
                "/v1/chat/completions",
                json={"model": test_model.name, "messages": [{"role": "user", "content": "hi"}]},
            )
        reader.join(120)
        code = _exit_code(svc)
        log = svc.log_text()
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "draining"
    for answer in (refused, refused_v1):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) > 0
        assert "shutting down (draining)" in answer.text
    assert reader.error is None, reader.error
    assert reader.status == 200
    assert reader.events[-1] == "[DONE]"
    assert len(reader.events) > at_signal + 5, "the stream was not in flight at the signal"
    chunks = reader.chunks()
    assert all("error" not in chunk for chunk in chunks), chunks[-3:]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(json.loads(text)["story"]) >= 300  # every token, up to the last one, arrived
    assert code == 0, log
    assert "DRAIN: shutting down" in log and "DRAIN: done after" in log and "FINISH" in log


def test_a_stream_still_running_when_the_grace_ends_gets_an_error_event(
    engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    extra: dict[str, object] = {"drainGraceMsec": 500}
    with running_service(tmp_path, engine_dir=engine_dir, model=test_model, extra=extra) as svc:
        reader = StreamReader(svc, _long_chat(test_model.name, 1999, 1999))
        reader.start()
        assert reader.started.wait(120), svc.log_text()
        svc.process.send_signal(signal.SIGTERM)
        reader.join(60)
        code = _exit_code(svc)
        log = svc.log_text()
    assert reader.error is None, reader.error
    assert reader.status == 200, reader.events
    assert reader.events[-1] == "[DONE]"
    last = json.loads(reader.events[-2])
    assert last["error"]["message"].startswith(
        "service is shutting down: the drain grace of 0.5 s (drainGraceMsec) ended"
    )
    assert code == 0, log
    assert "DRAIN: the grace of 0.5 s ended with 1 request(s) still in flight" in log
