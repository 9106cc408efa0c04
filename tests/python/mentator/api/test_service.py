"""`build_services`, `initialize_services` and the `serve` lifecycle (real uvicorn, fake engine)."""

from __future__ import annotations

import asyncio
import io
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from mentator.config.settings import Settings
from mentator.context import ServiceContext
from mentator.engine.manager import EngineManager
from mentator.hardware.probes import ProbeEnv
from mentator.server import build_services, initialize_services, reopen_database, serve

if TYPE_CHECKING:
    from mentator_testing.fake_engine import FakeEngine, LogReader


def _probe_env(tmp_path: Path) -> ProbeEnv:
    missing = str(tmp_path / "missing-tool")
    return ProbeEnv(
        engine_dir=tmp_path / "engine",
        dev_root=tmp_path / "dev",
        sys_root=tmp_path / "sys",
        nvidia_smi=missing,
        rocminfo=missing,
        environ={"PATH": ""},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_build_services_opens_the_database_and_logs(
    settings: Settings, core_log: LogReader
) -> None:
    out = io.StringIO()
    services = build_services(settings, stream_out=out, stream_err=io.StringIO())
    assert services.database is not None and services.chatlog is not None
    assert settings.db_file.exists()
    first = core_log(services)[0]
    assert (first["pipe"], first["message"]) == ("DB", f'init db in "{settings.db_file}"')
    assert f'[DB] init db in "{settings.db_file}"' in out.getvalue()
    assert not services.ready  # no scan, no backend yet
    services.database.close()


def test_build_services_survives_an_unusable_database(tmp_path: Path, settings: Settings) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    unusable = replace(settings, db_file=blocker / "db" / "x.db")
    err = io.StringIO()
    services = build_services(unusable, stream_out=io.StringIO(), stream_err=err)
    assert services.database is None and services.corelog is None
    assert services.db_error is not None
    assert "database unavailable" in err.getvalue()
    assert services.health.last_db_failure is not None


def test_initialize_services_selects_a_backend_and_scans(
    tmp_path: Path, settings: Settings, core_log: LogReader
) -> None:
    services = build_services(settings, stream_out=io.StringIO(), stream_err=io.StringIO())
    initialize_services(services, probe_env=_probe_env(tmp_path))
    assert services.ready
    assert isinstance(services.engine, EngineManager)
    assert services.backend is not None and services.backend.backend == "cpu"
    messages = [str(entry["message"]) for entry in core_log(services)]
    assert any(message.startswith("backend cuda skipped: ") for message in messages)
    assert any(message.startswith("backend cpu selected: ") for message in messages)
    assert 'add model(s): "alpha.gguf", "beta.gguf";' in messages


def test_serve_listens_reports_health_and_stops_cleanly(
    settings: Settings, engine: FakeEngine, core_log: LogReader
) -> None:
    settings = replace(settings, port=_free_port())
    services = build_services(settings, stream_out=io.StringIO(), stream_err=io.StringIO())

    def initialize(target: ServiceContext) -> None:
        target.registry.rescan()
        target.backend = engine.choice
        target.engine = engine

    async def scenario() -> tuple[int, list[int]]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve(services, initialize=initialize, stop=stop))
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as http:
            for _ in range(200):
                try:
                    response = await http.get("/health")
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            version = await http.get("/state/version")
            assert version.status_code == 200
        stop.set()
        return await asyncio.wait_for(server, 15), statuses

    code, statuses = asyncio.run(scenario())
    assert code == 0
    assert statuses[-1] == 200
    assert engine.shut_down
    messages = [str(entry["message"]) for entry in core_log(services)]
    assert f"LISTEN http://127.0.0.1:{settings.port}/" in messages
    assert messages[-1] == "FINISH" or "FINISH" in messages
    assert services.database is not None
    services.database.close()


def test_serve_reports_a_taken_port(settings: Settings, core_log: LogReader) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        taken_settings = replace(settings, port=port)
        services = build_services(
            taken_settings, stream_out=io.StringIO(), stream_err=io.StringIO()
        )
        code = asyncio.run(serve(services, initialize=lambda _: None))
    assert code == 1
    assert any(str(entry["message"]).startswith("cannot listen on") for entry in core_log(services))


def test_a_database_that_failed_at_start_is_opened_on_a_retry(
    tmp_path: Path, settings: Settings, core_log: LogReader
) -> None:
    blocker = tmp_path / "later"
    blocker.write_text("not a folder yet")
    late = replace(settings, db_file=blocker / "x.db")
    services = build_services(late, stream_out=io.StringIO(), stream_err=io.StringIO())
    assert services.database is None
    assert not reopen_database(services)  # still impossible: stays unavailable
    assert services.db_error is not None
    blocker.unlink()
    blocker.mkdir()  # the folder appears (a volume mounted late, a permission fixed)
    assert reopen_database(services)
    assert services.database is not None and services.chatlog is not None
    assert services.db_error is None and services.health.problem() is None
    messages = [str(entry["message"]) for entry in core_log(services)]
    assert f'init db in "{late.db_file}" (after a retry)' in messages
    services.database.close()


def test_an_exception_during_startup_makes_health_failed_not_starting_forever(
    settings: Settings,
) -> None:
    settings = replace(settings, port=_free_port())
    services = build_services(settings, stream_out=io.StringIO(), stream_err=io.StringIO())

    def broken(_target: ServiceContext) -> None:
        raise OSError("model folder unreadable")

    async def scenario() -> httpx.Response:
        stop = asyncio.Event()
        server = asyncio.create_task(serve(services, initialize=broken, stop=stop))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as http:
            for _ in range(200):
                try:
                    response = await http.get("/health")
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                if response.json()["status"] != "starting":
                    break
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(server, 15)
        return response

    response = asyncio.run(scenario())
    assert response.status_code == 503
    assert response.json()["status"] == "failed"
    assert response.json()["reason"] == "startup failed: OSError: model folder unreadable"
    assert services.database is not None
    services.database.close()
