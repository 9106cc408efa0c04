"""The shadow's own rules, on real sockets and a real SQLite file (the end-to-end comparison
between two real services is tests/python/mentator/integration/test_shadow.py): which exchanges
are offered (completions, never a shadow copy), the sampling share, the bounded queue (dropped
and counted), and a target that cannot be reached (an error, counted and stored; the caller's
answer untouched)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.inference.shadowing import SHADOW_HEADER, ExchangeCopy, ShadowStats
from mentator.replay.runner import ReplayOptions, Target
from mentator.replay.shadow import Shadow
from mentator.storage.database import Database
from mentator.storage.health import StorageHealth
from mentator.storage.shadowlog import ShadowLogStore
from mentator_testing.fake_engine import FakeEngine, build_settings, build_test_services
from mentator_testing.recording_logger import RecordingLogger
from mentator_testing.service_process import free_port

PROMPT_BODY = '{"model":"alpha","message":{"user":"hi"},"durationMsec":1000}'
ANSWER = '{"result":{"data":"Hello"},"duration":{"promptMsec":5,"queueMsec":0}}'


def _copy(route: str = "/prompt") -> ExchangeCopy:
    return ExchangeCopy(route=route, code=200, request=PROMPT_BODY, response=ANSWER, primary_ms=5)


@contextmanager
def _silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _shadow(
    url: str, *, percent: int = 100, queue_size: int = 10, store: ShadowLogStore | None = None
) -> Shadow:
    return Shadow(
        ReplayOptions(Target.parse(url), timeout_s=30),
        percent=percent,
        queue_size=queue_size,
        store=lambda: store,
        logger=RecordingLogger(),
        clock_ms=lambda: 1_700_000_000_000,
    )


def test_a_full_queue_drops_the_copy_and_counts_it() -> None:
    async def scenario() -> ShadowStats:
        with _silent_server() as url:
            shadow = _shadow(url, queue_size=2)
            for _ in range(5):  # within one turn of the loop: nothing is sent yet
                shadow.offer(_copy())
            stats = shadow.stats()
            await shadow.aclose()
            return stats

    stats = asyncio.run(scenario())
    assert (stats.queued, stats.dropped) == (2, 3)


def test_only_the_sampled_share_is_copied() -> None:
    draws = iter([0.05, 0.5, 0.099, 0.1, 0.95, 0.0])

    async def scenario() -> ShadowStats:
        with _silent_server() as url:
            shadow = _shadow(url, percent=10, queue_size=100)
            shadow._sample = lambda: next(draws)
            for _ in range(6):
                shadow.offer(_copy())
            shadow.offer(_copy("/embedding"))  # not a route the shadow compares: not even drawn
            stats = shadow.stats()
            await shadow.aclose()
            return stats

    assert asyncio.run(scenario()).queued == 3  # 0.05, 0.099 and 0.0 are under 10 %


def test_an_unreachable_target_is_an_error_counted_and_stored(tmp_path: Path) -> None:
    store = ShadowLogStore(Database(tmp_path / "db.sqlite", StorageHealth()))

    async def scenario() -> ShadowStats:
        shadow = _shadow(f"http://127.0.0.1:{free_port()}", store=store)
        shadow.offer(_copy())
        await asyncio.wait_for(shadow.drained(), 30)
        stats = shadow.stats()
        await shadow.aclose()
        return stats

    stats = asyncio.run(scenario())
    assert (stats.identical, stats.different, stats.error, stats.queued) == (0, 0, 1, 0)
    [row] = store.newest()
    assert (row.route, row.outcome, row.primary_code, row.shadow_code) == (
        "/prompt",
        "error_replayed",
        200,
        0,
    )
    assert "ConnectError" in row.detail


class RecordingShadow:
    """The port, recording what the service offers."""

    def __init__(self) -> None:
        self.offered: list[ExchangeCopy] = []

    def offer(self, copy: ExchangeCopy) -> None:
        self.offered.append(copy)

    def stats(self) -> ShadowStats:
        return ShadowStats(target="http://candidate", percent=100, identical=len(self.offered))


def test_the_service_offers_its_completions_but_never_a_shadow_copy(tmp_path: Path) -> None:
    engine = FakeEngine(replies=["Hello", "Again", "Chat"])
    services = build_test_services(build_settings(tmp_path), engine)
    shadow = RecordingShadow()
    services.shadow = shadow
    prompt = {"model": "alpha", "message": {"user": "hi"}, "durationMsec": 9000}
    with TestClient(create_app(services)) as client:
        assert client.post("/prompt", json=prompt).status_code == 200
        copied = client.post("/prompt", json=prompt, headers={SHADOW_HEADER: "1"})
        assert copied.status_code == 200
        assert client.post("/prompt", json={**prompt, "model": "nope"}).status_code == 400
        assert client.post("/embedding", json={"model": "alpha", "message": "x"}).status_code == 200
        chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        activity = client.get("/state/activity").json()
    # The first /prompt, the failed one (failures are compared too) and the chat; not the copy,
    # not the embedding.
    assert [(c.route, c.code) for c in shadow.offered] == [
        ("/prompt", 200),
        ("/prompt", 400),
        ("/v1/chat/completions", 200),
    ]
    first = shadow.offered[0]
    assert '"data":"Hello"' in first.response and '"user":"hi"' in first.request
    assert activity["shadow"]["identical"] == 3 and activity["shadow"]["share"] == 1.0
