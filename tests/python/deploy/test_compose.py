"""deploy/compose/ (three replicas behind HAProxy, on the host's network), checked offline:
every replica's --conf-use file loads as the service reads it (read-only: the service never
writes it) and differs from the others only in its port, HAProxy's servers are those ports, the
drain's timings fit HAProxy's health checks, compose's stop_grace_period and roll.sh's
`docker stop --time`, HAProxy checks a route that needs no key, and every replica has a volume
of its own. tests/python/mentator_e2e/test_rolling_restart.py runs it all for real."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from mentator.api.app import create_app
from mentator.config.keys import DEFAULT_PORT
from mentator.config.loader import load_use
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


def _replica_config(replica: dict[str, Any]) -> Path:
    """The replica's own config file, as its --conf-use argument and its mount name it."""
    assert replica["command"][0] == "--conf-use", replica["command"]
    inside = replica["command"][1]
    [source] = [m.split(":")[0] for m in replica["volumes"] if m.endswith(f":{inside}:ro")]
    return COMPOSE / str(source)


def test_the_replicas_configs_load_read_only_and_differ_only_in_their_port(
    tmp_path: Path,
) -> None:
    loaded = {}
    for name, replica in _replicas().items():
        path = _replica_config(replica)
        text = path.read_text(encoding="utf-8")
        settings = load_use(path, environ={}, cwd=tmp_path)
        assert path.read_text(encoding="utf-8") == text  # never written: a read-only mount
        assert settings.warnings == (), (name, settings.warnings)
        assert settings.host == "127.0.0.1", name  # only HAProxy is reachable from outside
        assert str(settings.db_file).startswith("/opt/mentator-llm-service/data/"), name
        assert str(settings.model_dir).startswith("/opt/mentator-llm-service/data/"), name
        loaded[name] = settings
    ports = {name: s.port for name, s in loaded.items()}
    assert len(set(ports.values())) == len(ports), ports
    assert DEFAULT_PORT not in ports.values()  # HAProxy's
    first = next(iter(loaded.values()))
    for settings in loaded.values():
        assert dataclasses.replace(settings, port=0, config_file=Path()) == dataclasses.replace(
            first, port=0, config_file=Path()
        )
    servers = dict(re.findall(r"^\s*server (\S+) (\S+)$", _haproxy(), re.MULTILINE))
    assert servers == {name: f"127.0.0.1:{port}" for name, port in ports.items()}


def test_the_drain_timings_fit_the_checks_the_stop_grace_and_roll_sh(tmp_path: Path) -> None:
    check = re.search(r"default-server .*\binter (\S+) fall (\d+)", _haproxy())
    assert check, "no default-server line with inter and fall"
    detection_s = _seconds(check[1]) * int(check[2])
    roll = (COMPOSE / "roll.sh").read_text(encoding="utf-8")
    [roll_stop_s] = re.findall(r"docker stop --time (\d+)", roll)
    for name, replica in _replicas().items():
        settings = load_use(_replica_config(replica), environ={}, cwd=tmp_path)
        assert settings.drain_notice_msec / 1000 > detection_s, name  # HAProxy sees the 503
        grace = _seconds(replica["stop_grace_period"])
        assert settings.drain_grace_msec / 1000 + AFTER_GRACE_S <= grace, name
        assert grace == int(roll_stop_s), name  # roll.sh's docker stop gives the same time


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
    servers = re.findall(r"^\s*server (\S+) ", config, re.MULTILINE)
    # The server names are the container names: roll.sh finds each replica's state by it.
    assert servers == [replica["container_name"] for replica in _replicas().values()]
    assert re.search(rf'^\s*bind "\$\{{MENTATOR_BIND\}}:{DEFAULT_PORT}"$', config, re.MULTILINE)
    assert re.search(r"^\s*retry-on .*\b503\b", config, re.MULTILINE)
    assert re.search(r"^\s*option redispatch", config, re.MULTILINE)


def test_every_replica_has_its_own_data_volume() -> None:
    data = {
        name: next(m.split(":")[0] for m in s["volumes"] if ":/opt/mentator-llm-service/data" in m)
        for name, s in _replicas().items()
    }
    assert len(data) == 3
    assert len(set(data.values())) == len(data), data  # SQLite and the models: one per replica
