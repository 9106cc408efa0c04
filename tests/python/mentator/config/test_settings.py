"""`settings_from`: the loader's checked values become `Settings` with every value read at its
type; a wrong type, a missing value or a value without a field is a TypeError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentator.config.keys import CONFIG_KEYS
from mentator.config.loader import load_use
from mentator.config.settings import LogSettings, Settings, log_settings_from, settings_from

LOG = LogSettings(level="debug", live_day=30, save_prompt=False)
VALUES: dict[str, object] = {
    "port": 8080,
    "host": "127.0.0.1",
    "model_dir": Path("/m"),
    "db_file": Path("/d/x.db"),
    "tool_dir": None,
    "tool_env_dir": None,
    "tool_timeout_msec": 30000,
    "engine_dir": None,
    "backend": "auto",
    "parallel": 4,
    "queue_limit": 64,
    "max_loaded_models": 3,
    "memory_budget_mb": 0,
    "vram_budget_mb": 0,
    "keep_alive_sec": -1,
    "swap_grouping": True,
    "warm_swap_mb": 0,
    "pinned_models": (),
    "drain_grace_msec": 25000,
    "drain_notice_msec": 0,
    "compact_json": True,
    "grammar_repeat_penalty": False,
    "cancel_on_disconnect": True,
    "grammar_dry": True,
    "cut_off_retry": True,
    "threads": None,
    "api_keys": ("k",),
    "shadow_url": None,
    "shadow_percent": 10,
    "shadow_queue": 100,
    "shadow_api_key": None,
    "default_options": {"temperature": 0.5},
    "log": LOG,
}


def build(values: dict[str, object]) -> Settings:
    return settings_from(values, config_file=None, mode="use", warnings=())


def test_every_key_row_has_a_value_here_and_becomes_its_field() -> None:
    assert {row.field for row in CONFIG_KEYS} == set(VALUES)
    settings = build(VALUES)
    assert settings.port == 8080 and settings.model_dir == Path("/m")
    assert settings.api_keys == ("k",) and settings.log == LOG and settings.threads is None


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("port", "8080"),
        ("port", True),
        ("model_dir", "/m"),
        ("threads", 2.5),
        ("api_keys", ["k"]),
        ("default_options", {1: 2}),
        ("log", {"level": "debug"}),
    ],
)
def test_a_value_of_the_wrong_type_names_its_field(name: str, wrong: object) -> None:
    with pytest.raises(TypeError, match=f"config field '{name}': expected"):
        build({**VALUES, name: wrong})


def test_a_missing_or_an_extra_value_is_an_error() -> None:
    without = {key: value for key, value in VALUES.items() if key != "parallel"}
    with pytest.raises(TypeError, match="'parallel' has no value"):
        build(without)
    with pytest.raises(TypeError, match=r"without a Settings field: \['new_key'\]"):
        build({**VALUES, "new_key": 1})


def test_log_settings_read_their_level() -> None:
    assert log_settings_from({"level": "trace", "live_day": 7, "save_prompt": True}) == (
        LogSettings(level="trace", live_day=7, save_prompt=True)
    )
    with pytest.raises(TypeError, match="'level': expected error or debug or trace"):
        log_settings_from({"level": "verbose", "live_day": 7, "save_prompt": True})


def test_a_loaded_file_gives_typed_values(tmp_path: Path) -> None:
    config = tmp_path / "c.jsonc"
    config.write_text(
        '{"port": 8080.0, "modelDir": "m", "dbFile": "x.db", "defaultOptions": {},'
        ' "log": {"level": "error", "liveDay": 2, "savePrompt": false}}'
    )
    settings = load_use(config, environ={}, cwd=tmp_path)
    assert settings.port == 8080 and isinstance(settings.port, int)
    assert settings.model_dir == tmp_path / "m" and settings.log.level == "error"
