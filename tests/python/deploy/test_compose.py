"""deploy/compose/ (three replicas behind HAProxy), checked offline: the replicas' read-only
config is complete (the service never has to rewrite it), the drain's timings fit HAProxy's
health checks and compose's stop_grace_period, HAProxy checks a route that needs no key and
knows every replica, and every replica has a volume of its own."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.keys import DEFAULT_PORT
from mentator.config.loader import load_docker
from mentator_testing.fake_engine import build_settings, build_test_services

COMPOSE = Path("deploy/compose")
# After the grace: the cut-off answers, the server's close and the engine's stop (server.py).
AFTER_GRACE_S = 10


def _services() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))
    services = document["services"]
    assert isinstance(services, dict)
    return services


def _replicas() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if name.startswith("mentator-")}


def _haproxy() -> str:
    return (COMPOSE / "haproxy" / "haproxy.cfg").read_text(encoding="utf-8")


def _seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+)(ms|s)", value)
    assert found, value
    return int(found[1]) / (1000 if found[2] == "ms" else 1)


def test_the_replicas_config_is_complete_and_the_timings_fit(tmp_path: Path) -> None:
    text = (COMPOSE / "mentator-llm-service.conf.jsonc").read_text(encoding="utf-8")
    path = tmp_path / "mentator-llm-service.conf.jsonc"
    path.write_text(text, encoding="utf-8")
    settings = load_docker(path, data_root=tmp_path / "data", environ={})
    assert path.read_text(encoding="utf-8") == text  # nothing was missing
    assert settings.warnings == ()
    check = re.search(r"default-server .*\binter (\S+) fall (\d+)", _haproxy())
    assert check, "no default-server line with inter and fall"
    detection_s = _seconds(check[1]) * int(check[2])
    assert settings.drain_notice_msec / 1000 > detection_s  # HAProxy sees the 503 first
    for name, replica in _replicas().items():
        grace = _seconds(replica["stop_grace_period"])
        assert settings.drain_grace_msec / 1000 + AFTER_GRACE_S <= grace, name
        mounts = replica["volumes"]
        assert any(m.endswith(":/etc/mentator/mentator-llm-service.conf.jsonc:ro") for m in mounts)
        assert replica["command"] == [
            "--conf-docker",
            "/etc/mentator/mentator-llm-service.conf.jsonc",
        ]


def test_haproxy_checks_an_open_route_and_knows_every_replica(tmp_path: Path) -> None:
    config = _haproxy()
    [checked] = re.findall(r"option httpchk GET (\S+)", config)
    assert "http-check expect status 200" in config
    settings = dataclasses.replace(build_settings(tmp_path), api_keys=("k",))
    services = build_test_services(settings, None)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        # No key (a health check sends none), and a real route.
        assert client.get(checked).status_code not in (401, 404, 405)
    if services.database is not None:
        services.database.close()
    servers = dict(re.findall(r"^\s*server (\S+) (\S+)$", config, re.MULTILINE))
    assert servers == {name: f"{name}:{DEFAULT_PORT}" for name in _replicas()}
    assert re.search(rf"^\s*bind :{DEFAULT_PORT}$", config, re.MULTILINE)
    assert re.search(r"^\s*retry-on .*\b503\b", config, re.MULTILINE)
    assert re.search(r"^\s*option redispatch", config, re.MULTILINE)


def test_every_replica_has_its_own_data_volume() -> None:
    data = {
        name: next(m.split(":")[0] for m in s["volumes"] if ":/opt/mentator-llm-service/data" in m)
        for name, s in _replicas().items()
    }
    assert len(data) == 3
    assert len(set(data.values())) == len(data), data  # SQLite and the models: one per replica
