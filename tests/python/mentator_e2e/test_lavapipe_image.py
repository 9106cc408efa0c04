"""The Vulkan tier proven without a GPU: the lavapipe TEST image (docker/lavapipe/, the universal
image with Mesa's CPU Vulkan driver) behind a render node the probe can see. Vulkan loads through
the same code path as on a real GPU, the engine offloads the layers, the start-up canary finds it
correct and — slower than the CPU here — does not choose it, with both speeds in the reason.
Forced with ``backend: vulkan``, /prompt answers schema-valid JSON computed on Vulkan, and the
restart takes the canary's report from the cache.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import docker
import jsonschema
import pytest
from mentator_e2e.harness import (
    DATA_GID,
    DATA_UID,
    Service,
    chown_tree,
    run_service,
    wait_for,
)

pytestmark = pytest.mark.e2e

CONF_FILE = "mentator-llm-service.conf.jsonc"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    return data


def _render_node(tmp_path: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """A /dev/dri/renderD128 for the probe (lavapipe itself needs no device node)."""
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "dri" / "renderD128").touch()
    # A busy CI runner compiles lavapipe's shaders slowly: more time before a tier counts as hung.
    environment = {"MENTATOR_DEV_ROOT": "/fake-dev", "MENTATOR_CANARY_LIMIT_S": "300"}
    return {str(dev): {"bind": "/fake-dev", "mode": "ro"}}, environment


def _ready_backend(service: Service) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        response = service.get("/health")
        if response.status_code != 200:
            return None
        return dict(service.get_json("/state")["backend"])

    return wait_for("/health ready after the canary", ready, 700, service.log_block)


def test_vulkan_on_lavapipe_is_checked_correct_slower_and_forced_answers(
    docker_client: docker.DockerClient, lavapipe_image: str, tmp_path: Path
) -> None:
    data = _data(tmp_path)
    mounts, environment = _render_node(tmp_path)
    with run_service(
        docker_client, lavapipe_image, data, extra_mounts=mounts, environment=environment
    ) as service:
        service.wait_http()
        backend = _ready_backend(service)
        logs = service.logs()
        canary = backend["canary"]
        print("STATE.BACKEND", json.dumps(backend, indent=2))
        tiers = {tier["name"]: tier for tier in canary["tiers"]}
        vulkan, cpu = tiers["vulkan"], tiers["cpu"]
        assert vulkan["probed"] and vulkan["loaded"] and vulkan["problem"] is None, canary
        assert vulkan["correct"] is True, canary
        assert vulkan["correctness"]["positions"] == 8
        offload = r"canary vulkan: .*(offloaded \d+/\d+ layers to GPU|Vulkan0 model buffer size)"
        assert re.search(offload, logs), logs
        assert "llvmpipe" in logs, logs  # the device, in the entrypoint's --explain
        faster = "cpu" if cpu["tokensPerSecond"] >= vulkan["tokensPerSecond"] else "vulkan"
        assert backend["name"] == canary["chosen"] == faster, canary
        for tier in (vulkan, cpu):
            assert f"{tier['tokensPerSecond']:.1f} t/s" in canary["reason"], canary
        assert not canary["cached"] and canary["seconds"] > 0

    # Forced: the same data folder, so the canary's report comes from the cache.
    (data / CONF_FILE).write_text('{"backend": "vulkan"}\n', encoding="utf-8")
    chown_tree(data, DATA_UID, DATA_GID)
    with run_service(
        docker_client, lavapipe_image, data, extra_mounts=mounts, environment=environment
    ) as service:
        service.wait_http()
        backend = _ready_backend(service)
        assert backend["name"] == "vulkan", backend
        assert backend["canary"]["cached"] is True, backend
        # Whether the speeds agreed or not (they depend on the machine's load), the config decides.
        assert "→ vulkan (forced by the config" in backend["canary"]["reason"], backend
        if faster == "cpu":
            assert "is slower" in (backend["canary"]["warning"] or ""), backend
        model = service.get_json("/state/models")["models"][0]["name"]
        # lavapipe generates a few tokens/s on a busy runner: a short answer, a long deadline.
        response = service.post_json(
            "/prompt",
            {
                "model": model,
                "durationMsec": 400000,
                "message": {"user": "Bob is 42 years old. Write his name and age."},
                "options": {"temperature": 0, "maxTokens": 32},
                "format": {"useGrammar": True, "jsonSchema": PERSON},
            },
            timeout_s=420,
        )
        assert response.status_code == 200, f"{response.text}\n{service.log_block()}"
        jsonschema.validate(response.json()["result"]["data"], PERSON)
        metrics = service.get("/metrics").text
        assert f'mentator_model_loaded{{backend="vulkan",model="{model}"}} 1.0' in metrics, metrics
