"""``/metrics`` after known requests: the inference histograms (counts and sums), the token
counters, outcomes and decoding, bounded labels, and what the engine reports of itself.

The fake engine answers whole completions after ``delay_s`` with the timings given (as
llama-server's ``timings``), so the time per output token is exact and the time to the first
token is the delay less ``predicted_ms``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mentator.api.metrics import MAX_MODEL_LABELS, ApiMetrics, ModelLabels
from mentator.engine.ports import KvCacheReport

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine

DELAY_S = 0.3
TIMINGS = {"prompt_ms": 80.0, "predicted_ms": 200.0, "predicted_n": 4.0}
SLACK_S = 0.5  # the test machine's own overhead per request, at most
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def prompt_body(**extra: Any) -> dict[str, Any]:
    return {"model": "alpha", "message": {"user": "Tell me"}, "durationMsec": 10000, **extra}


SCHEMA = {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}


@pytest.fixture
def driven(client: TestClient, engine: FakeEngine) -> Samples:
    """Known requests of every family and outcome, then one scrape."""
    engine.delay_s = DELAY_S
    engine.timings = dict(TIMINGS)
    engine.replies = ["Hello", "Again", "not json", "Chat"]
    assert client.post("/prompt", json=prompt_body()).status_code == 200
    assert client.post("/prompt", json=prompt_body()).status_code == 200
    rejected = client.post(
        "/prompt", json=prompt_body(format={"useGrammar": True, "jsonSchema": SCHEMA})
    )
    assert rejected.status_code == 400  # generated, then refused: not JSON
    refused = client.post(
        "/prompt", json=prompt_body(format={"useGrammar": False, "jsonSchema": {"type": "x"}})
    )
    assert refused.status_code == 400  # refused before generating
    chat = {"model": "beta.gguf", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as stream:
        assert stream.status_code == 200
        stream.read()
    unknown = client.post("/v1/completions", json={"model": "gamma", "prompt": "x"})
    assert unknown.status_code == 400
    assert client.post("/embedding", json={"model": "alpha", "message": "abc"}).status_code == 200
    engine.restart_counts = {"alpha.gguf": 2}
    engine.kv_report = KvCacheReport("alpha.gguf", 300, 4096, 2, 1)
    return scrape(client)


def test_answered_requests_fill_the_latency_histograms(driven: Samples) -> None:
    prompt = {"model": "alpha.gguf", "family": "prompt"}
    # Two answered /prompt requests; the rejected and refused ones are not latencies.
    assert value(driven, "mentator_request_duration_seconds_count", **prompt) == 2
    total = value(driven, "mentator_request_duration_seconds_sum", **prompt)
    assert 2 * DELAY_S <= total < 2 * (DELAY_S + SLACK_S)
    assert value(driven, "mentator_request_queue_wait_seconds_count", **prompt) == 2
    assert value(driven, "mentator_request_queue_wait_seconds_sum", **prompt) < 2 * SLACK_S
    # From the engine's timings: 200 ms for 4 tokens, and the first token 200 ms before the end.
    assert value(driven, "mentator_time_per_output_token_seconds_count", **prompt) == 2
    assert value(driven, "mentator_time_per_output_token_seconds_sum", **prompt) == pytest.approx(
        2 * 0.05
    )
    bucket = {**prompt, "le": "0.05"}
    assert value(driven, "mentator_time_per_output_token_seconds_bucket", **bucket) == 2
    assert value(driven, "mentator_time_to_first_token_seconds_count", **prompt) == 2
    first = value(driven, "mentator_time_to_first_token_seconds_sum", **prompt)
    assert 2 * (DELAY_S - 0.2) <= first < 2 * (DELAY_S - 0.2 + SLACK_S)
    # Each first token came at least predicted_ms before its request's end.
    assert first <= total - 2 * 0.2 + 0.01


def test_streams_measure_their_own_token_times(driven: Samples) -> None:
    chat = {"model": "beta.gguf", "family": "v1-chat"}
    assert value(driven, "mentator_request_duration_seconds_count", **chat) == 2
    # The whole answer (engine timings) and the stream (measured as its two pieces came).
    assert value(driven, "mentator_time_to_first_token_seconds_count", **chat) == 2
    assert value(driven, "mentator_time_per_output_token_seconds_count", **chat) == 2
    assert value(driven, "mentator_time_to_first_token_seconds_sum", **chat) < 2 * SLACK_S + 0.1


def test_tokens_outcomes_and_decoding_are_counted(driven: Samples) -> None:
    prompt = {"model": "alpha.gguf", "family": "prompt"}
    # Three generations of 3 tokens on 7 prompt tokens (the rejected answer too).
    assert value(driven, "mentator_generation_tokens_total", **prompt) == 9
    assert value(driven, "mentator_prompt_tokens_total", **prompt) == 21
    chat = {"model": "beta.gguf", "family": "v1-chat"}
    assert value(driven, "mentator_generation_tokens_total", **chat) == 3 + 2
    assert value(driven, "mentator_prompt_tokens_total", **chat) == 7 + 5
    requests = "mentator_requests_total"
    assert value(driven, requests, **prompt, outcome="ok", decoding="free") == 2
    assert value(driven, requests, **prompt, outcome="answer_rejected", decoding="constrained") == 1
    assert value(driven, requests, **prompt, outcome="schema_refused", decoding="free") == 1
    assert value(driven, requests, **chat, outcome="ok", decoding="free") == 2
    unknown = {"model": "other", "family": "v1-completions"}
    assert value(driven, requests, **unknown, outcome="model_not_found", decoding="free") == 1
    embedding = {"model": "alpha.gguf", "family": "embedding"}
    assert value(driven, requests, **embedding, outcome="ok", decoding="none") == 1
    assert value(driven, "mentator_request_duration_seconds_count", **embedding) == 1
    # The first metrics are still there, by route.
    assert value(driven, "mentator_tokens_generated_total", route="/prompt") == 9
    assert value(driven, "mentator_prompt_duration_seconds_count", route="/prompt") == 2


def test_what_the_engine_reports(driven: Samples) -> None:
    model = {"model": "alpha.gguf"}
    assert value(driven, "mentator_engine_restarts_total", **model) == 2
    assert value(driven, "mentator_engine_kv_cache_tokens", **model) == 300
    assert value(driven, "mentator_engine_kv_cache_capacity_tokens", **model) == 4096
    assert value(driven, "mentator_engine_kv_cache_usage_ratio", **model) == 300 / 4096
    assert value(driven, "mentator_engine_slots", **model) == 2
    assert value(driven, "mentator_engine_slots_busy", **model) == 1


def test_model_labels_are_bounded() -> None:
    labels = ModelLabels(limit=2)
    assert [labels(name) for name in ("a", None, "b", "c", "a")] == [
        "a",
        "other",
        "b",
        "other",
        "a",
    ]
    assert MAX_MODEL_LABELS >= 16


def test_the_readme_names_every_metric() -> None:
    readme = Path("README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(mentator_[a-z_]+)`", section))
    for family in ApiMetrics().registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert name in documented, f"README's Metrics section does not name {name}"
