"""The web UI in a real browser (Debian's chromium driven by Playwright) against the real service
and engine (SmolLM2): pages load clean and air-gapped, SEND answers, FORMAT check, live logs,
LOAD/SAVE of prompt files. Screenshots go to $MENTATOR_UI_SCREENSHOTS (default: a folder in the
system temp dir); the README's PNGs (docs/ui-chat.png, docs/ui-stat.png) are refreshed with
MENTATOR_UI_DOCS=<repo>/docs.

Without chromium the tests skip locally, but fail in CI (CI=true): CI installs it (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from mentator_testing.service_process import RunningService, running_service

CHROMIUM = os.environ.get("MENTATOR_CHROMIUM", "/usr/bin/chromium")
PAGES = ("/", "/chat", "/stat", "/log/core", "/log/chat")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SEND_TIMEOUT_MS = 240_000
PEOPLE_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(
        os.environ.get("MENTATOR_UI_SCREENSHOTS")
        or Path(tempfile.gettempdir()) / "mentator-ui-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        message = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@dataclass
class Watch:
    """What a page did that it must not: console errors, uncaught exceptions, remote requests."""

    errors: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in LOCAL_HOSTS:
            self.remote.append(request.url)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.remote == [], self.remote


@pytest.fixture
def page(browser: Browser, service: RunningService) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(
        base_url=service.base_url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    tab = context.new_page()
    watch = Watch()
    tab.on("console", watch.console)
    tab.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
    tab.on("request", watch.request)
    # CLEAR's confirm, download's prompt (with its suggested default)
    tab.on("dialog", lambda dialog: dialog.accept(dialog.default_value))
    yield tab, watch
    context.close()


def _set_format(tab: Page, schema_text: str) -> None:
    tab.click("#format-open")
    tab.fill("#format-schema", schema_text)
    tab.click("#format-ok")


def _set_options(tab: Page, options: dict[str, object]) -> None:
    tab.click("#options-open")
    tab.fill("#options-text", json.dumps(options))
    tab.click("#options-ok")


def _clipboard(tab: Page, expected_part: str) -> str:
    """The clipboard's text once the page's (asynchronous) copy has landed there."""
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = str(tab.evaluate("navigator.clipboard.readText()"))
        if expected_part in text:
            break
        tab.wait_for_timeout(100)
    return text


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_clean_and_local(
    page: tuple[Page, Watch], path: str, shots: Path, model_name: str
) -> None:
    tab, watch = page
    tab.goto(path)
    tab.wait_for_load_state("networkidle")
    expect(tab.locator("#top")).to_contain_text("version")
    if path == "/chat":
        expect(tab.locator("#model")).to_contain_text(model_name)
    if path == "/stat":
        expect(tab.locator("#card-server")).to_contain_text("uptime")
        expect(tab.locator("#card-backend")).to_contain_text("cpu")
    name = "index" if path == "/" else path.strip("/").replace("/", "-")
    tab.screenshot(path=shots / f"ui-{name}.png", full_page=True)
    watch.clean()


def test_chat_send_gives_a_schema_valid_answer(
    page: tuple[Page, Watch], shots: Path, model_name: str
) -> None:
    tab, watch = page
    tab.goto("/chat")
    expect(tab.locator("#model")).to_contain_text(model_name)
    tab.fill("#editor", "Bob is 34 years old. Give his name and age as JSON.")
    _set_format(tab, json.dumps(PEOPLE_SCHEMA, indent=2))
    _set_options(tab, {"temperature": 0, "maxTokens": 80, "seed": 1})
    tab.fill("#context-size", "2048")
    tab.click("#send")
    expect(tab.locator("#response")).to_have_class("response ok", timeout=SEND_TIMEOUT_MS)
    answer = json.loads(tab.locator("#response").text_content() or "")
    jsonschema.validate(answer["result"]["data"], PEOPLE_SCHEMA)
    expect(tab.locator("#elapsed")).to_contain_text(" s")
    expect(tab.locator("#send")).to_be_enabled()
    tab.screenshot(path=shots / "ui-chat-answer.png")
    # The four exports: payload and whole answer, to a file and to the clipboard.
    with tab.expect_download() as data_file:
        tab.click("#file-data")
    assert data_file.value.suggested_filename.startswith("response-data-")
    assert json.loads(Path(data_file.value.path()).read_text()) == answer["result"]["data"]
    with tab.expect_download() as all_file:
        tab.click("#file-all")
    assert all_file.value.suggested_filename.startswith("response-all-")
    assert json.loads(Path(all_file.value.path()).read_text()) == answer
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab.click("#copy-data")
    assert json.loads(_clipboard(tab, "name")) == answer["result"]["data"]
    tab.click("#copy-all")
    assert json.loads(_clipboard(tab, "duration")) == answer
    watch.clean()


def test_chat_stream_through_openai_route(page: tuple[Page, Watch], model_name: str) -> None:
    tab, watch = page
    tab.goto("/chat")
    expect(tab.locator("#model")).to_contain_text(model_name)
    tab.fill("#editor", "Say hello.")
    _set_options(tab, {"temperature": 0, "maxTokens": 16})
    tab.check("#stream")
    tab.click("#send")
    expect(tab.locator("#response")).to_have_class("response ok", timeout=SEND_TIMEOUT_MS)
    assert json.loads(tab.locator("#response").text_content() or "")["result"]["data"]
    watch.clean()


def test_bad_schema_shows_the_check_error(page: tuple[Page, Watch], client: httpx.Client) -> None:
    tab, watch = page
    bad = {"type": "object1"}
    expected = client.post("/check/gbnf", json={"schema": bad}).json()["error"]
    assert expected  # the service rejects it; the page must show exactly that
    tab.goto("/chat")
    tab.click("#format-open")
    tab.fill("#format-schema", json.dumps(bad))
    tab.click("#format-check")
    expect(tab.locator("#format-result")).to_have_text(expected)
    expect(tab.locator("#format-result")).to_have_class("result bad")
    tab.fill("#format-schema", json.dumps(PEOPLE_SCHEMA))
    tab.click("#format-check")
    expect(tab.locator("#format-result")).to_have_class("result ok")
    # "set example" puts the schema itself in the box (the original inserted its wrapper).
    tab.click("#format-example")
    expect(tab.locator("#format-schema")).not_to_have_value(json.dumps(PEOPLE_SCHEMA))
    example = json.loads(tab.locator("#format-schema").input_value())
    assert example["type"] == "array"
    tab.keyboard.press("Escape")
    expect(tab.locator("#format-dialog")).not_to_be_visible()
    watch.clean()


def test_options_modal_examples_and_check(page: tuple[Page, Watch]) -> None:
    tab, watch = page
    tab.goto("/chat")
    tab.click("#options-open")
    tab.click("#options-example")
    expect(tab.locator("#options-text")).to_have_value(re.compile(r'"temperature": 0\.8'))
    tab.click("#options-example-json")
    expect(tab.locator("#options-text")).to_have_value(re.compile(r'"maxTokens": 4096'))
    tab.fill("#options-text", '{"temperature": 0.5}')
    tab.click("#options-check")
    expect(tab.locator("#options-result")).to_contain_text('"temperature": 0.5')
    tab.keyboard.press("Escape")
    expect(tab.locator("#options-dialog")).not_to_be_visible()
    watch.clean()


def test_log_pages_show_new_rows_without_reload(
    page: tuple[Page, Watch], client: httpx.Client, shots: Path
) -> None:
    tab, watch = page
    tab.goto("/log/core")
    expect(tab.locator("#log-table tr").first).to_be_visible()
    tab.check("#extra")  # the model name is in the row's additional data
    marker = "ui-test-model-that-does-not-exist"
    # An unknown model: a core log error line and a chat log row (errors are always stored).
    response = client.post(
        "/prompt", json={"model": marker, "message": {"user": "x"}, "durationMsec": 1000}
    )
    assert response.status_code == 400
    expect(tab.locator("#log-table")).to_contain_text(marker, timeout=15_000)
    expect(tab.locator("#log-table tr.error").first).to_be_visible()
    tab.goto("/log/chat")
    expect(tab.locator("#rows")).to_contain_text(marker, timeout=15_000)
    client.post(
        "/prompt", json={"model": marker + "-2", "message": {"user": "x"}, "durationMsec": 1}
    )
    expect(tab.locator("#rows")).to_contain_text(marker + "-2", timeout=15_000)
    expect(tab.locator(".chatrec.error").first).to_be_visible()
    # A block shows the stored (compact) text; a click expands it pretty-printed, again collapses.
    request = tab.locator(".chatrec").first.locator("pre").first
    expect(request).to_contain_text(f'"model":"{marker}-2"')
    request.click()
    expect(request).to_contain_text(f'"model": "{marker}-2"')
    request.click()
    expect(request).to_contain_text(f'"model":"{marker}-2"')
    tab.screenshot(path=shots / "ui-log-chat-rows.png", full_page=True)
    watch.clean()


def test_index_example_opens_a_filled_chat_and_the_splitter_is_remembered(
    page: tuple[Page, Watch],
) -> None:
    tab, watch = page
    tab.goto("/")
    with tab.context.expect_page() as opened:
        tab.click("#open-example")
    chat = opened.value
    chat.on("console", watch.console)
    expect(chat.locator("#editor")).to_have_value(re.compile("Bob, Diana and John"))
    stored = json.loads(chat.evaluate("localStorage.getItem('mentator.chat')"))
    assert json.loads(stored["format"]["schema"])["type"] == "array"
    box = chat.locator("#splitter").bounding_box()
    assert box is not None
    chat.mouse.move(box["x"] + box["width"] / 2, box["y"] + 50)
    chat.mouse.down()
    chat.mouse.move(300, box["y"] + 50, steps=5)
    chat.mouse.up()
    ratio = json.loads(chat.evaluate("localStorage.getItem('mentator.chat')"))["ratio"]
    assert 0.2 <= ratio < 0.3
    chat.reload()
    left = chat.locator("#left").bounding_box()
    assert left is not None and left["width"] < 400
    watch.clean()


def test_save_then_load_round_trips_a_prompt_file(
    page: tuple[Page, Watch], tmp_path: Path, model_name: str
) -> None:
    tab, watch = page
    tab.goto("/chat")
    expect(tab.locator("#model")).to_contain_text(model_name)
    tab.fill("#editor", "the user line\nand a second one")
    tab.select_option("#message-type", "system")
    tab.fill("#editor", "the system line")
    tab.select_option("#message-type", "user")
    _set_format(tab, json.dumps(PEOPLE_SCHEMA))
    _set_options(tab, {"temperature": 0.25, "maxTokens": 33})
    with tab.expect_download() as info:
        tab.click("#save")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    text = saved.read_text()
    assert saved.name.startswith("prompt-") and "$$begin" in text and "the user line" in text
    before = json.loads(tab.evaluate("localStorage.getItem('mentator.chat')"))

    tab.click("#clear")
    expect(tab.locator("#editor")).to_have_value("")
    tab.set_input_files("#load-file", str(saved))
    expect(tab.locator("#editor")).to_have_value("the user line\nand a second one")
    after = json.loads(tab.evaluate("localStorage.getItem('mentator.chat')"))
    assert after["system"] == "the system line"
    assert json.loads(after["options"]) == {"temperature": 0.25, "maxTokens": 33}
    assert json.loads(after["format"]["schema"]) == PEOPLE_SCHEMA
    assert after["format"]["useGrammar"] is True
    assert after["model"] == before["model"] == model_name
    assert after["fileName"] == saved.name
    watch.clean()


def test_stat_page_shows_backend_and_stats(
    page: tuple[Page, Watch], shots: Path, client: httpx.Client
) -> None:
    tab, watch = page
    state = client.get("/state").json()
    tab.goto("/stat")
    expect(tab.locator("#card-backend")).to_contain_text(state["backend"]["reason"])
    for tier in state["backend"]["skipped"]:
        expect(tab.locator("#card-backend")).to_contain_text(f"skipped {tier}")
    expect(tab.locator("#stats .card")).to_have_count(3)  # savePrompt is on in this service
    expect(tab.locator("#card-server")).to_contain_text("tokens/s")
    # The rate needs two scrapes of /metrics, 3 s apart.
    expect(tab.locator("#card-server")).not_to_contain_text("measuring", timeout=10_000)
    tab.screenshot(path=shots / "ui-stat.png", full_page=True)
    watch.clean()


def _metric_sum(client: httpx.Client, name: str) -> int:
    """A metric summed over its labels, from the service's /metrics text."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return round(total)


def test_stat_page_charts_draw_update_and_match_the_metrics(
    page: tuple[Page, Watch], shots: Path, client: httpx.Client, model_name: str
) -> None:
    """The Activity charts: drawn from /state/activity, their totals are /metrics' totals (the
    service started within the hour), and a new request shows without a reload."""
    tab, watch = page
    body = {
        "model": model_name,
        "message": {"user": "Name a colour."},
        "durationMsec": 120000,
        "options": {"temperature": 0, "maxTokens": 8},
    }
    for _ in range(2):
        assert client.post("/prompt", json=body).status_code == 200
    missing = {"model": "no-such-model", "message": {"user": "x"}, "durationMsec": 1000}
    assert client.post("/prompt", json=missing).status_code == 400
    tab.goto("/stat")
    for chart in ("tokens", "latency", "queue", "outcomes", "day-requests", "day-latency"):
        expect(tab.locator(f"#chart-{chart} svg.chart")).to_be_visible()
    requests = _metric_sum(client, "mentator_requests_total")
    tokens = _metric_sum(client, "mentator_generation_tokens_total")
    assert requests >= 3 and tokens > 0
    expect(tab.locator("#total-requests")).to_have_text(str(requests))
    expect(tab.locator("#total-tokens")).to_have_text(str(tokens))
    # The bars add up to the same total; the answered requests are points on the latency lines.
    bars = tab.locator("#chart-outcomes rect.bar").evaluate_all(
        "nodes => nodes.reduce((sum, n) => sum + Number(n.dataset.value), 0)"
    )
    assert bars == requests
    expect(tab.locator("#chart-outcomes .legend")).to_contain_text("model_not_found")
    assert tab.locator('#chart-latency circle[data-series="p95 first token"]').count() >= 1
    assert tab.locator('#chart-tokens circle[data-series="tokens/s"]').count() == 60
    # The day (chat log, savePrompt on): this service's stored rows are in the last hour's bar.
    day = client.get("/state/activity").json()["lastDay"]["hours"]
    stored = sum(hour["success"] + hour["failed"] for hour in day)
    expect(tab.locator("#chart-day-requests figcaption")).to_contain_text(
        f"{sum(hour['success'] for hour in day)} successful"
    )
    assert stored >= 3
    # Another request: the charts follow without a reload (the page polls every 10 s).
    assert client.post("/prompt", json=body).status_code == 200
    expect(tab.locator("#total-requests")).to_have_text(str(requests + 1), timeout=25_000)
    expect(tab.locator("#total-tokens")).to_have_text(
        str(_metric_sum(client, "mentator_generation_tokens_total"))
    )
    # The README's screenshot of the stat page (refreshed by test_refresh_readme_screenshots).
    tab.screenshot(path=shots / "ui-stat.png", full_page=True)
    watch.clean()


def test_log_download_and_clear(page: tuple[Page, Watch], client: httpx.Client) -> None:
    tab, watch = page
    tab.goto("/log/core")
    expect(tab.locator("#log-table tr").first).to_be_visible()
    with tab.expect_download() as info:
        tab.click("#download")  # the prompt's default: today
    assert info.value.suggested_filename.startswith("mentator-llm-service-corelogs-")
    body = {"model": "to-be-cleared", "message": {"user": "x"}, "durationMsec": 1}
    client.post("/prompt", json=body)
    tab.goto("/log/chat")
    expect(tab.locator("#rows")).to_contain_text("to-be-cleared", timeout=15_000)
    tab.click("#clear")  # confirm → DELETE /log/chat
    expect(tab.locator("#status")).to_contain_text("deleted")
    expect(tab.locator("#rows")).to_contain_text("no chat log records")
    assert client.get("/log/chat/byid").json() == {"logs": []}
    watch.clean()


def test_api_key_is_asked_once_on_401_then_sent(
    browser: Browser, service: RunningService, model_name: str
) -> None:
    """The key contract (docs/ui.md): on a 401 the page asks for the key, keeps it in
    localStorage["mentator.apiKey"] and retries with ``Authorization: Bearer``. The service's
    key check is another issue's; here the browser's requests are answered 401 without the key."""
    context = browser.new_context(base_url=service.base_url)
    tab = context.new_page()
    asked: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("s3cret")

    tab.on("dialog", on_dialog)
    seen: list[str | None] = []

    def guard(route: Route) -> None:
        header = route.request.headers.get("authorization")
        seen.append(header)
        if header != "Bearer s3cret":
            route.fulfill(status=401, json={"error": "API key required"})
        else:
            route.continue_()

    tab.route("**/state/models", guard)
    tab.goto("/chat")
    expect(tab.locator("#model")).to_contain_text(model_name)
    assert len(asked) == 1 and "API key" in asked[0]
    assert seen[-1] == "Bearer s3cret" and seen[0] is None
    # The stat page sends /state and /state/models together: both fail, one question.
    tab.evaluate("localStorage.removeItem('mentator.apiKey')")
    tab.route("**/state", guard)
    tab.goto("/stat")
    expect(tab.locator("#card-models")).to_contain_text("1")
    expect(tab.locator("#card-server")).to_contain_text("uptime")
    assert len(asked) == 2
    tab.unroute("**/state")
    assert tab.evaluate("localStorage.getItem('mentator.apiKey')") == "s3cret"
    tab.goto("/chat")  # the stored key goes out the first time now: no further question
    expect(tab.locator("#model")).to_contain_text(model_name)
    assert len(asked) == 2
    context.close()


def test_real_api_keys_the_pages_ask_once_and_work(
    browser: Browser, engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    """With keys configured in the service itself (not intercepted): the chat page asks once,
    then the chat and stat pages work with the stored key."""
    extra: dict[str, object] = {"apiKeys": ["s3cret-key"]}
    with running_service(tmp_path, engine_dir=engine_dir, model=test_model, extra=extra) as svc:
        assert httpx.get(f"{svc.base_url}/state/models").status_code == 401
        context = browser.new_context(base_url=svc.base_url)
        tab = context.new_page()
        asked: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept("s3cret-key")

        tab.on("dialog", on_dialog)
        tab.goto("/chat")
        expect(tab.locator("#model")).to_contain_text(test_model.name)
        assert len(asked) == 1 and "API key" in asked[0]
        tab.goto("/stat")
        expect(tab.locator("#card-models")).to_contain_text("1")
        assert len(asked) == 1
        context.close()


def test_pages_without_saveprompt(
    browser: Browser, engine_dir: Path, test_model: Path, tmp_path: Path
) -> None:
    """savePrompt off: the stat page says why there are no request statistics, and the chat log
    page shows errors only with a warning."""
    extra: dict[str, object] = {"log": {"level": "debug", "liveDay": 30, "savePrompt": False}}
    with running_service(tmp_path, engine_dir=engine_dir, model=test_model, extra=extra) as svc:
        context = browser.new_context(base_url=svc.base_url)
        tab = context.new_page()
        watch = Watch()
        tab.on("console", watch.console)
        tab.on("request", watch.request)
        tab.goto("/stat")
        expect(tab.locator("#stats-disabled")).to_contain_text("savePrompt is off")
        expect(tab.locator("#stats .card")).to_have_count(0)
        tab.goto("/log/chat")
        expect(tab.locator("#saveprompt-off")).to_be_visible()
        expect(tab.locator("#errors-only")).to_be_checked()
        watch.clean()
        context.close()


def test_refresh_readme_screenshots(shots: Path) -> None:
    """Keeps docs/ in step: MENTATOR_UI_DOCS=<repo>/docs copies the README's PNGs there."""
    target = os.environ.get("MENTATOR_UI_DOCS")
    if not target:
        pytest.skip("MENTATOR_UI_DOCS not set: the README screenshots are not refreshed")
    for shot, name in (("ui-chat-answer.png", "ui-chat.png"), ("ui-stat.png", "ui-stat.png")):
        shutil.copy(shots / shot, Path(target) / name)
