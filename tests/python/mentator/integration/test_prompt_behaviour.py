"""`/prompt` and `/embedding` behaviour on a real engine: text, errors, residency, concurrency."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
import time

import httpx

from mentator_testing.service_process import RunningService, still_running


def prompt(client: httpx.Client, model: str, user: str, **extra: object) -> httpx.Response:
    body: dict[str, object] = {"model": model, "durationMsec": 120_000, "message": {"user": user}}
    body.update(extra)
    return client.post("/prompt", json=body)


def test_text_answer_then_model_stays_loaded(client: httpx.Client, model_name: str) -> None:
    first = prompt(client, model_name, "Say hello.", options={"maxTokens": 24})
    assert first.status_code == 200, first.text
    assert isinstance(first.json()["result"]["data"], str)
    assert first.json()["result"]["data"].strip()
    again = prompt(client, model_name, "Say hello again.", options={"maxTokens": 8})
    assert again.json()["result"]["loadModelStatus"] == "exists"


def test_other_spelling_of_the_name_does_not_reload(client: httpx.Client, model_name: str) -> None:
    prompt(client, model_name, "warm up", options={"maxTokens": 4})
    spelled = model_name.removesuffix(".gguf").upper()
    response = prompt(client, spelled, "Hi", options={"maxTokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["loadModelStatus"] == "exists"


def test_context_size_change_reloads_once(client: httpx.Client, model_name: str) -> None:
    first = prompt(client, model_name, "Hi", contextSize=1024, options={"maxTokens": 4})
    assert first.status_code == 200, first.text
    assert first.json()["result"]["loadModelStatus"] == "load"
    second = prompt(client, model_name, "Hi", contextSize=1024, options={"maxTokens": 4})
    assert second.json()["result"]["loadModelStatus"] == "exists"
    # An embedding request asks for no contextSize: the loaded child serves it as is (the
    # original reloaded here, thrashing between /prompt and /embedding).
    embedding = client.post("/embedding", json={"model": model_name, "message": "hello"})
    assert embedding.status_code == 200, embedding.text
    assert embedding.json()["result"]["loadModelStatus"] == "exists"


def test_embedding_vector(client: httpx.Client, model_name: str) -> None:
    response = client.post("/embedding", json={"model": model_name, "message": "The cat sat."})
    assert response.status_code == 200, response.text
    vector = response.json()["result"]["data"]
    assert len(vector) == 576  # SmolLM2-135M's hidden size
    assert all(isinstance(x, float) for x in vector)
    assert any(x != 0.0 for x in vector)


def test_unknown_model_is_400(client: httpx.Client) -> None:
    response = prompt(client, "no-such-model", "Hi")
    assert response.status_code == 400
    assert response.json()["error"] == 'Model not found: "no-such-model"'
    assert set(response.json()["duration"]) == {"promptMsec", "queueMsec"}


def test_timeout_cancels_generation(client: httpx.Client, model_name: str) -> None:
    prompt(client, model_name, "warm up", options={"maxTokens": 2})
    started = time.monotonic()
    response = prompt(
        client,
        model_name,
        "Write a very long story about a dragon.",
        durationMsec=300,
        options={"maxTokens": 4000, "temperature": 0.8},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "cancelled by timeout"
    assert time.monotonic() - started < 10


def test_two_concurrent_prompts(client: httpx.Client, model_name: str) -> None:
    prompt(client, model_name, "warm up", options={"maxTokens": 2})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                prompt, client, model_name, f"Count from {n} to {n + 5}.", options={"maxTokens": 32}
            )
            for n in (1, 10)
        ]
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]


def test_engine_killed_mid_request_is_500_then_recovers(
    client: httpx.Client, service: RunningService, model_name: str
) -> None:
    prompt(client, model_name, "warm up", options={"maxTokens": 2})
    children = service.engine_children()
    assert children, "no llama-server child found"
    results: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: results.append(
            prompt(
                client,
                model_name,
                "Write a long story.",
                options={"maxTokens": 4000, "temperature": 0.8},
            )
        )
    )
    worker.start()
    time.sleep(1.5)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.join(timeout=60)
    assert results, "the request did not finish after the engine died"
    assert results[0].status_code == 500, results[0].text
    assert "engine" in results[0].json()["error"].lower()
    recovered = prompt(client, model_name, "Say hi.", options={"maxTokens": 8})
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["result"]["loadModelStatus"] == "load"


def test_chat_log_rows_are_written(client: httpx.Client, model_name: str) -> None:
    prompt(client, model_name, "Hi", options={"maxTokens": 2})
    logs = client.get("/log/chat/byid", params={"afterId": 0, "limit": 200}).json()["logs"]
    assert logs and {"id", "ts", "code", "durationPromptMsec", "durationQueueMsec"} <= set(logs[0])
    state = client.get("/state").json()
    assert state["currentModel"]["name"] == model_name
    assert state["backend"]["name"] == "cpu"


def test_engine_killed_while_idle_next_request_is_retried_on_a_fresh_engine(
    client: httpx.Client, service: RunningService, model_name: str
) -> None:
    warm = prompt(client, model_name, "Say hi.", options={"maxTokens": 4})
    assert warm.status_code == 200, warm.text
    children = service.engine_children()
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while still_running(children) and time.monotonic() < deadline:
        time.sleep(0.001)
    # At once (the kernel has the child dead; the service may not have reaped it yet).
    response = prompt(client, model_name, "Say hi.", options={"maxTokens": 4})
    assert response.status_code == 200, response.text
    assert set(service.engine_children()).isdisjoint(children)
    assert "exited unexpectedly" in service.log_text()


def test_context_size_beyond_the_model_is_a_400_saying_what_it_allows(
    client: httpx.Client, model_name: str
) -> None:
    response = prompt(client, model_name, "Hi", contextSize=1_000_000_000)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "contextSize 1000000000" in error
    assert "trained context 8192 tokens" in error
    assert "use at most 8192" in error
