"""The drain over HTTP (a fake engine): once the service drains, /health answers 503 "draining"
for the load balancer, every inference route answers 503 with Retry-After in its own error shape,
and the rest of the service (version, state, metrics) still answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mentator.context import ServiceContext
from mentator_testing.fake_engine import FakeEngine

INFERENCE = [
    ("/prompt", {"model": "alpha.gguf", "message": {"user": "hi"}, "durationMsec": 9000}),
    ("/embedding", {"model": "alpha.gguf", "message": "hi"}),
    (
        "/v1/chat/completions",
        {"model": "alpha.gguf", "messages": [{"role": "user", "content": "hi"}]},
    ),
    (
        "/v1/chat/completions",
        {"model": "alpha.gguf", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ),
    ("/v1/completions", {"model": "alpha.gguf", "prompt": "hi"}),
    ("/v1/completions", {"model": "alpha.gguf", "prompt": "hi", "stream": True}),
    ("/v1/embeddings", {"model": "alpha.gguf", "input": "hi"}),
]


def test_health_says_draining_with_503(client: TestClient, services: ServiceContext) -> None:
    assert client.get("/health").status_code == 200
    services.drain.begin(25)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "draining" and body["inFlight"] == 0
    assert "shutting down" in body["reason"]
    assert client.get("/state/version").status_code == 200  # the liveness probe stays green
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(("path", "body"), INFERENCE)
def test_new_inference_requests_get_503_with_retry_after(
    client: TestClient,
    services: ServiceContext,
    engine: FakeEngine,
    path: str,
    body: dict[str, object],
) -> None:
    services.drain.begin(25)
    response = client.post(path, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "2"
    answer = response.json()
    message = answer["error"]["message"] if path.startswith("/v1/") else answer["error"]
    assert message.startswith("service is shutting down (draining)")
    assert engine.acquired == []
