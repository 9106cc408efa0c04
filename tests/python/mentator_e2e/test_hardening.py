"""Hardening of the CPU image, tried the way a new user (or an attacker) would (issue 14):
API keys through the environment, bad bodies, a burst, engine deaths, a fuzzer over the OpenAPI
document, and a restart that keeps every file.

One container (host network, fixed port 19777) with MENTATOR_API_KEYS set; the tests run in file
order and share it, like one deployment.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import httpx
import openai
import pytest
from mentator_e2e.harness import (
    CONFIG_NAME,
    DATA_GID,
    DATA_UID,
    SERVICE_URL,
    FileState,
    Service,
    chown_tree,
    run_service,
)

from mentator_testing.openai_canonical import ask_canonical_get_weather

pytestmark = pytest.mark.e2e

KEY = "e2e-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
FUZZ_EXAMPLES = 30  # per operation and generation mode: bounded, ~minutes on a CPU


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("hardening")
    folder.chmod(0o755)
    chown_tree(folder, DATA_UID, DATA_GID)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service(
    docker_client: docker.DockerClient, cpu_image: str, data_dir: Path
) -> Iterator[Service]:
    environment = {"MENTATOR_API_KEYS": f"{KEY},e2e-key-2"}
    with run_service(docker_client, cpu_image, data_dir, environment=environment) as running:
        running.http.headers.update(AUTH)
        running.wait_http()
        yield running


@pytest.fixture(scope="module")
def model(service: Service) -> str:
    models = service.get_json("/state/models")["models"]
    assert models, service.log_block()
    return str(models[0]["name"])


def _prompt(model: str, user: str = "Say hi.", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "durationMsec": 120_000,
        "message": {"user": user},
        "options": {"maxTokens": 8},
        **extra,
    }


def _engine_pids(service: Service) -> list[int]:
    """Host PIDs of the container's llama-server processes (docker top)."""
    top = service.container.top()
    titles = top["Titles"]
    pid_col, cmd_col = titles.index("PID"), titles.index("CMD")
    return [
        int(row[pid_col])
        for row in top["Processes"]
        if "llama-server" in row[cmd_col].split(" ", 1)[0]
    ]


def _kill(pids: list[int]) -> None:
    """SIGKILL, and wait until the kernel has them dead (a zombie, or gone): the signal is
    delivered asynchronously, and "a request right after the engine died" needs it dead."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for pid in pids:
            try:
                states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                states.append("gone")
        if all(state in ("Z", "X", "gone") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"llama-server {pids} still running 10 s after SIGKILL")


# --- API keys, passed through the image's environment ------------------------------------------


def test_keys_from_the_environment_guard_every_route_but_health_and_version(
    service: Service, model: str
) -> None:
    with httpx.Client(base_url=SERVICE_URL, timeout=120) as anonymous:
        assert anonymous.get("/state/version").status_code == 200
        assert anonymous.get("/health").status_code in (200, 503)
        for method, path, body in (
            ("POST", "/prompt", _prompt(model)),
            ("POST", "/v1/chat/completions", {"model": model, "messages": []}),
            ("GET", "/v1/models", None),
            ("GET", "/log/core/byid?limit=5", None),
            ("GET", "/log/chat/byid?limit=5", None),
            ("GET", "/state", None),
        ):
            refused = anonymous.request(method, path, json=body)
            assert refused.status_code == 401, (path, refused.text)
            wrong = anonymous.request(method, path, json=body, headers={"x-api-key": "nope"})
            assert wrong.status_code == 401, (path, wrong.text)
        answered = anonymous.post("/prompt", json=_prompt(model), headers={"x-api-key": KEY})
        assert answered.status_code == 200, answered.text
    assert service.get("/state").status_code == 200
    assert service.get("/v1/models").status_code == 200
    assert KEY not in service.logs()


# --- the README's quick start ------------------------------------------------------------------


def test_readme_quick_start_example_gives_a_useful_answer(service: Service, model: str) -> None:
    """The README's curl body, as written there, answers the fact it asks for."""
    readme = Path("README.md").read_text(encoding="utf-8")
    marker = "curl -s localhost:19777/prompt -H 'content-type: application/json' -d '"
    start = readme.index(marker) + len(marker)
    body = json.loads(readme[start : readme.index("\n}'", start) + 2])
    assert body["model"] == model, "the README names another model than the image's default"
    response = service.post_json("/prompt", body)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["data"] == {"name": "Bob", "age": 42}, response.text
    shown = readme[readme.index("# {", start) + 2 :].split("\n", 1)[0]
    assert json.loads(shown)["result"]["data"] == response.json()["result"]["data"]


# OpenAI's canonical function-calling example as its documentation writes it (issue 20): an
# unbounded string, `tool_choice="required"`, `max_tokens=128`, through the official client.
def test_openai_client_canonical_get_weather_call_completes(service: Service, model: str) -> None:
    """The image's default config answers it with a complete call (it used to be a 400: the
    model's call was cut off at the token limit)."""
    with openai.OpenAI(base_url=f"{SERVICE_URL}/v1", api_key=KEY, timeout=600) as client:
        ask_canonical_get_weather(client, model)


# --- bad bodies ---------------------------------------------------------------------------------


def test_bad_bodies_are_clear_4xx(service: Service, model: str) -> None:
    json_type = {"content-type": "application/json", **AUTH}
    nested = "[" * 100_000 + "]" * 100_000
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("/prompt", nested.encode(), json_type, 400, "nested too deeply"),
        ("/v1/chat/completions", nested.encode(), json_type, 400, "nested too deeply"),
        ("/prompt", b'{"model": "\x00", "x": 1\x00}', json_type, 400, "not valid JSON"),
        (
            "/prompt",
            json.dumps(_prompt("a\u0000b")).encode(),
            json_type,
            400,
            "Model not found",
        ),
        ("/prompt", json.dumps(_prompt("../../etc/passwd")).encode(), json_type, 400, "not found"),
        ("/prompt", json.dumps(_prompt("/etc/passwd")).encode(), json_type, 400, "not found"),
        ("/prompt", b"x" * (20 * 1024 * 1024), json_type, 413, "too large"),
        ("/prompt", b"<a/>", {"content-type": "application/xml", **AUTH}, 415, "Unsupported"),
        (
            "/prompt",
            json.dumps(_prompt(model, contextSize=1_000_000_000)).encode(),
            json_type,
            400,
            "contextSize 1000000000",
        ),
    ]
    for path, content, headers, status, text in cases:
        response = service.http.post(path, content=content, headers=headers, timeout=120)
        assert response.status_code == status, (path, content[:60], response.text[:300])
        assert text in response.text, (path, response.text[:300])


# --- a burst --------------------------------------------------------------------------------------


def test_burst_of_100_prompts_answers_only_200_or_503(service: Service, model: str) -> None:
    def one(index: int) -> int:
        with httpx.Client(base_url=SERVICE_URL, timeout=300, headers=AUTH) as http:
            body = _prompt(model, f"Say {index}.", options={"maxTokens": 2})
            return http.post("/prompt", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(one, range(100)))
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses


# --- engine deaths --------------------------------------------------------------------------------


def test_engine_killed_while_idle_the_next_request_answers(service: Service, model: str) -> None:
    assert service.post_json("/prompt", _prompt(model)).status_code == 200
    pids = _engine_pids(service)
    assert pids, service.log_block()
    _kill(pids)
    response = service.post_json("/prompt", _prompt(model))
    assert response.status_code == 200, response.text
    assert set(_engine_pids(service)).isdisjoint(pids)


def test_engine_killed_mid_request_that_request_fails_the_next_answers(
    service: Service, model: str
) -> None:
    assert service.post_json("/prompt", _prompt(model)).status_code == 200
    pids = _engine_pids(service)
    results: list[httpx.Response] = []
    long = _prompt(model, "Write a long story.", options={"maxTokens": 4000, "temperature": 0.8})
    worker = threading.Thread(target=lambda: results.append(service.post_json("/prompt", long)))
    worker.start()
    time.sleep(3)
    _kill(pids)
    worker.join(timeout=120)
    assert results and results[0].status_code == 500, results
    assert "exited unexpectedly" in results[0].json()["error"]
    assert service.post_json("/prompt", _prompt(model)).status_code == 200


# --- the fuzzer -----------------------------------------------------------------------------------


def _fuzz(operation: Any, mode: Any, problems: list[str]) -> int:
    """Run one operation's generated cases in one mode; return how many got an answer."""
    # hypothesis comes with schemathesis (a dependency of it, not a requirement of ours).
    from hypothesis import HealthCheck, Phase, given, settings  # pants: no-infer-dep
    from hypothesis.errors import Unsatisfiable  # pants: no-infer-dep

    declared = set(operation.definition.raw.get("responses", {}))
    answered = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal answered
        try:
            response = case.call(base_url=SERVICE_URL, headers=AUTH, timeout=30)
        except Exception as error:  # a client-side timeout: not the server's answer
            if "timeout" in f"{type(error).__name__} {error}".lower():
                return
            raise
        answered += 1
        status = response.status_code
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        if status >= 500 and status != 503:
            problems.append(f"{where}: server error {status}: {response.text[:200]}")
        elif str(status) not in declared and "default" not in declared:
            problems.append(f"{where}: undocumented status {status} (declared {sorted(declared)})")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to make invalid (an operation without parameters, negative mode)
    return answered


def test_fuzz_the_openapi_document_no_server_error_no_undocumented_status(
    service: Service,
) -> None:
    from schemathesis.generation.modes import GenerationMode
    from schemathesis.openapi import from_dict

    schema = from_dict(service.get_json("/doc/json"))
    problems: list[str] = []
    answered = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            answered += _fuzz(cast(Any, result).ok(), mode, problems)
    assert answered > 100, answered
    assert not problems, "\n".join(sorted(set(problems))[:40])


# --- restart --------------------------------------------------------------------------------------


def test_docker_restart_keeps_config_db_and_models(
    service: Service, data_dir: Path, model: str
) -> None:
    config = data_dir / CONFIG_NAME
    model_file = data_dir / "models" / model
    before_config, before_model = FileState.of(config), FileState.of(model_file)
    db_files = sorted(data_dir.glob("*.db"))
    assert db_files, sorted(p.name for p in data_dir.iterdir())
    db_inode = db_files[0].stat().st_ino
    rows_before = service.get_json("/log/core/byid?limit=100")["logs"]
    service.restart()
    service.wait_http()
    assert FileState.of(config) == before_config
    assert FileState.of(model_file) == before_model
    assert db_files[0].stat().st_ino == db_inode, "the database file was replaced"
    oldest = min(int(row["id"]) for row in rows_before)
    after = service.get_json(f"/log/core/byid?afterId={oldest - 1}&limit=500")["logs"]
    by_id = {int(row["id"]): row for row in after}
    for row in rows_before:
        assert by_id.get(int(row["id"])) == row, row
    # the HEALTHCHECK (an unauthenticated /state/version) still passes with keys set
    service.wait_health("healthy", timeout_s=150)
