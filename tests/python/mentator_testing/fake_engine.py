"""A fake engine manager and real ServiceContext around it, for the HTTP-layer tests: real SQLite,
real model folder, real queue, and an engine that answers what each test scripts."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from mentator.config.options import JSON_DEFAULTS
from mentator.config.settings import LogSettings, Settings
from mentator.context import ServiceContext
from mentator.server import build_services
from mentator_testing.fake_engine_port import Call as Call
from mentator_testing.fake_engine_port import FakeEngine as FakeEngine
from mentator_testing.fake_engine_port import FakeHandle as FakeHandle
from mentator_testing.fake_engine_port import Reply as Reply

MODEL_NAMES = ("alpha.gguf", "beta.gguf")


def build_settings(
    tmp_path: Path,
    *,
    save_prompt: bool = False,
    default_options: dict[str, object] | None = None,
    queue_limit: int = 8,
    parallel: int = 1,
) -> Settings:
    model_dir = tmp_path / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_NAMES:
        (model_dir / name).write_bytes(b"GGUF-not-really" * 100)
    options = dict(JSON_DEFAULTS)
    options.update(default_options or {})
    return Settings(
        port=19777,
        host="127.0.0.1",
        model_dir=model_dir,
        db_file=tmp_path / "db" / "test.db",
        tool_dir=None,
        tool_env_dir=None,
        default_options=options,
        log=LogSettings(level="trace", live_day=30, save_prompt=save_prompt),
        engine_dir=None,
        parallel=parallel,
        queue_limit=queue_limit,
        threads=None,
        config_file=None,
        mode="use",
    )


def build_test_services(settings: Settings, engine: FakeEngine | None) -> ServiceContext:
    services = build_services(settings, stream_out=io.StringIO(), stream_err=io.StringIO())
    services.registry.rescan()
    if engine is not None:
        services.backend = engine.choice
        services.engine = engine
    return services


def read_core_log(services: ServiceContext) -> list[dict[str, object]]:
    assert services.corelog is not None
    return list(reversed(services.corelog.after_id(0, 200)))


def read_chat_log(services: ServiceContext) -> list[dict[str, object]]:
    assert services.chatlog is not None
    return list(reversed(services.chatlog.after_id(0, 200)))


ServicesFactory = Callable[..., ServiceContext]
LogReader = Callable[[ServiceContext], list[dict[str, object]]]
