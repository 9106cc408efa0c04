"""Shadow traffic between two real services (each with its own llama-server and SmolLM2): the
primary copies every completion (shadowPercent 100) to the second one after answering; the
comparisons land in /metrics, /state/activity, the shadow table and the stat page.

The second service's default maxTokens is smaller, so a request that names no maxTokens is
answered differently there (a shorter text), while requests that name it at temperature 0 are
answered identically; an unknown model fails on both sides."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from mentator_testing.service_process import RunningService, running_service

CHROMIUM = os.environ.get("MENTATOR_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def pair(
    engine_dir: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, RunningService]]:
    with running_service(
        tmp_path_factory.mktemp("candidate"),
        engine_dir=engine_dir,
        model=test_model,
        parallel=1,
        extra={"defaultOptions": {"maxTokens": 4}},
    ) as candidate:
        extra: dict[str, object] = {
            "defaultOptions": {"maxTokens": 12},
            "shadowUrl": candidate.base_url,
            "shadowPercent": 100,
        }
        with running_service(
            tmp_path_factory.mktemp("primary"),
            engine_dir=engine_dir,
            model=test_model,
            parallel=1,
            extra=extra,
        ) as primary:
            yield primary, candidate


def _shadow_stats(client: httpx.Client, total: int) -> dict[str, Any]:
    """The primary's shadow counts once ``total`` copies were compared."""
    deadline = time.monotonic() + 240
    while True:
        stats: dict[str, Any] = client.get("/state/activity").json()["shadow"]
        if stats["identical"] + stats["different"] + stats["error"] >= total:
            return stats
        assert time.monotonic() < deadline, f"shadow comparisons not done: {stats}"
        time.sleep(0.5)


def test_copies_are_compared_counted_stored_and_shown(
    pair: tuple[RunningService, RunningService], test_model: Path
) -> None:
    primary, candidate = pair
    model = test_model.name
    fixed = {"temperature": 0, "maxTokens": 4, "seed": 1}
    prompt = {"model": model, "message": {"user": "Say hi."}, "durationMsec": 120000}
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hi."}],
        "temperature": 0,
        "max_tokens": 4,
        "seed": 1,
    }
    with httpx.Client(base_url=primary.base_url, timeout=180) as client:
        answers = [
            client.post("/prompt", json={**prompt, "options": fixed}),
            client.post("/v1/chat/completions", json=chat),
        ]
        with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as sse:
            assert sse.status_code == 200
            assert b"[DONE]" in sse.read()
        long = {**prompt, "message": {"user": "Count from one to twenty."}}
        answers.append(client.post("/prompt", json={**long, "options": {"temperature": 0}}))
        answers.append(client.post("/prompt", json={**prompt, "model": "no-such-model"}))
        # The caller's answers are the primary's own, unchanged by the shadow.
        assert [a.status_code for a in answers] == [200, 200, 200, 400]
        assert answers[0].json()["result"]["data"] and answers[2].json()["result"]["data"]

        stats = _shadow_stats(client, 5)
        assert (stats["identical"], stats["different"], stats["error"]) == (3, 1, 1), stats
        assert stats["dropped"] == 0 and stats["target"] == candidate.base_url
        metrics = client.get("/metrics").text
        for name, value in (("identical", 3), ("different", 1), ("error", 1), ("dropped", 0)):
            assert f"mentator_shadow_{name}_total {value}.0" in metrics, name

    # The candidate answered the five copies (and nothing else).
    candidate_metrics = httpx.get(f"{candidate.base_url}/metrics").text
    answered = sum(
        float(line.rsplit(" ", 1)[1])
        for line in candidate_metrics.splitlines()
        if line.startswith("mentator_requests_total{")
    )
    assert answered == 5

    with sqlite3.connect(primary.db_file) as db:
        rows = db.execute("SELECT route, outcome, detail FROM shadow ORDER BY id").fetchall()
    outcomes = sorted(outcome for _, outcome, _ in rows)
    assert outcomes == ["both_error", "different", "identical", "identical", "identical"]
    different = next(json.loads(detail) for _, outcome, detail in rows if outcome == "different")
    # The whole answer text differs (root pointer ""): the candidate's is the shorter one.
    assert different[0]["path"] == "" and len(different[0]["replayed"]) < len(
        different[0]["stored"]
    )

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: the stat page's shadow card is not checked")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        tab = browser.new_page(base_url=primary.base_url)
        tab.goto("/stat")
        card = tab.locator("#card-shadow")
        expect(card).to_contain_text(candidate.base_url)
        expect(card.locator("dd").nth(2)).to_have_text("3")  # identical
        expect(card.locator("dd").nth(3)).to_have_text("1")  # different
        browser.close()
