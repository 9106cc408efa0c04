"""The stat page's "Resident models" block in a real browser (chromium + Playwright) against the
real service and engine: after a request, the model is listed with its expiry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from mentator_testing.service_process import RunningService

CHROMIUM = os.environ.get("MENTATOR_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def test_stat_page_lists_resident_models_with_expiry(
    browser: Browser, service: RunningService, client: httpx.Client, model_name: str
) -> None:
    answer = client.post(
        "/prompt",
        json={
            "model": model_name,
            "message": {"user": "Hi"},
            "durationMsec": 120000,
            "options": {"maxTokens": 2},
            "keepAlive": "10m",
        },
    )
    assert answer.status_code == 200, answer.text
    context = browser.new_context(base_url=service.base_url)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/stat")
    table = tab.locator("#resident-table")
    expect(table).to_contain_text(model_name)
    expect(tab.locator(".resident-expiry")).to_contain_text("in ")
    expect(tab.locator("#resident-count")).to_contain_text("1 of 3")
    # The rest of the page still renders.
    expect(tab.locator("#card-server")).to_contain_text("uptime")
    context.close()
    assert errors == []
