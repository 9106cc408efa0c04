"""``/state/activity`` (the stat page's charts): the last hour's totals are the metrics' totals,
each request lands in the minute it ended, percentiles are nearest-rank, old minutes are
dropped, and the day comes from the chat log by hour."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mentator.api.activity import MINUTE_MS, Activity, nearest_rank
from mentator.inference.exchange import ExchangeReport
from mentator.inference.timing import Duration

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine


SCHEMA = {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}


def prompt_body(**extra: Any) -> dict[str, Any]:
    return {"model": "alpha", "message": {"user": "Tell me"}, "durationMsec": 10000, **extra}


def _metric_total(client: TestClient, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == name
    )


def test_the_hour_totals_match_the_metrics(client: TestClient, engine: FakeEngine) -> None:
    engine.timings = {"prompt_ms": 80.0, "predicted_ms": 200.0, "predicted_n": 4.0}
    engine.replies = ["Hello", "not json", "Chat"]
    assert client.post("/prompt", json=prompt_body()).status_code == 200
    bad = client.post(
        "/prompt", json=prompt_body(format={"useGrammar": True, "jsonSchema": SCHEMA})
    )
    assert bad.status_code == 400
    chat = {"model": "beta.gguf", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert client.post("/v1/completions", json={"model": "gamma", "prompt": "x"}).status_code == 400

    activity = client.get("/state/activity").json()
    hour = activity["lastHour"]
    assert len(hour["minutes"]) == 60
    totals = hour["totals"]
    assert totals["requestCount"] == 4 == _metric_total(client, "mentator_requests_total")
    assert totals["tokens"] == _metric_total(client, "mentator_generation_tokens_total") > 0
    assert totals["requests"] == {"answer_rejected": 1, "model_not_found": 1, "ok": 2}
    latest = hour["minutes"][-1]
    assert latest["requests"] == totals["requests"]  # all in this minute
    assert latest["latencyP50"] is not None and latest["firstTokenP95"] is not None
    assert latest["queueWaiting"] == 0 and latest["queueRunning"] == 0  # sampled at the read
    # The chat log (savePrompt off here): the two failures in the current hour, no successes.
    day = activity["lastDay"]
    assert day["savePrompt"] is False and len(day["hours"]) == 24
    assert (day["hours"][-1]["success"], day["hours"][-1]["failed"]) == (0, 2)
    assert sum(h["success"] + h["failed"] for h in day["hours"][:-1]) == 0


def _report(outcome: str, total_ms: int, first_s: float | None, tokens: int) -> ExchangeReport:
    return ExchangeReport(
        route="/prompt",
        kind="completion",
        code=200 if outcome == "ok" else 500,
        outcome=outcome,
        duration=Duration(prompt_msec=total_ms - 10, queue_msec=10),
        model="m",
        constrained=False,
        prompt_tokens=3,
        tokens=tokens,
        first_token_s=first_s,
        per_token_s=None,
    )


def test_minutes_percentiles_and_the_window() -> None:
    now = [10 * MINUTE_MS + 5_000]
    activity = Activity(lambda: now[0], minutes=3)
    for total_ms in (100, 200, 300, 400):
        activity.exchange_ended(_report("ok", total_ms, total_ms / 2000, 10))
    activity.exchange_ended(_report("timeout", 9000, None, 5))  # not a latency
    activity.sample(3, 1)
    activity.sample(1, 2)
    now[0] += 2 * MINUTE_MS
    activity.exchange_ended(_report("ok", 50, 0.01, 1))
    data = activity.to_json()
    first, middle, last = data["minutes"]
    assert first["start"] == 10 * MINUTE_MS
    assert first["requests"] == {"ok": 4, "timeout": 1}
    assert (first["latencyP50"], first["latencyP95"]) == (0.2, 0.4)
    assert (first["firstTokenP50"], first["firstTokenP95"]) == (0.1, 0.2)
    assert (first["queueWaiting"], first["queueRunning"]) == (3, 2)
    assert first["tokens"] == 45 and first["tokensPerSecond"] == 0.75
    assert middle["requests"] == {} and middle["latencyP50"] is None
    assert middle["queueWaiting"] is None  # never sampled: a gap, not a zero
    assert last["tokensPerSecond"] == 0.2  # 1 token over the 5 s of this minute so far
    assert data["totals"] == {"requests": {"ok": 5, "timeout": 1}, "requestCount": 6, "tokens": 46}
    now[0] += 3 * MINUTE_MS  # the first minute falls out of the window
    activity.exchange_ended(_report("ok", 50, 0.01, 1))
    assert activity.to_json()["totals"]["requestCount"] == 1


def test_nearest_rank() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([5.0], 0.95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert (nearest_rank(values, 0.5), nearest_rank(values, 0.95)) == (50.0, 95.0)
