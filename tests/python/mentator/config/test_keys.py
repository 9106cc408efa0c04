"""The key table drives the settings: one row per Settings field, one template member per row."""

from __future__ import annotations

from dataclasses import fields

from mentator.config.jsonc import parse_jsonc
from mentator.config.keys import CONFIG_KEYS, DOCKER_FILE_KEYS, LOG_KEYS
from mentator.config.settings import LogSettings, Settings
from mentator.config.template import docker_template_text, full_template_text

NOT_FROM_THE_FILE = {"config_file", "mode", "warnings"}


def test_every_settings_field_has_exactly_one_row() -> None:
    rows = [row.field for row in CONFIG_KEYS]
    assert sorted(rows) == sorted(
        f.name for f in fields(Settings) if f.name not in NOT_FROM_THE_FILE
    )
    assert sorted(row.field for row in LOG_KEYS) == sorted(f.name for f in fields(LogSettings))


def test_templates_hold_the_rows_in_table_order() -> None:
    full = parse_jsonc(full_template_text())
    assert isinstance(full, dict)
    assert list(full) == [row.key for row in CONFIG_KEYS]
    docker = parse_jsonc(docker_template_text())
    assert isinstance(docker, dict)
    assert list(docker) == [row.key for row in DOCKER_FILE_KEYS]
    assert list(docker["log"]) == [row.key for row in LOG_KEYS]


def test_only_the_image_fixed_keys_are_missing_from_the_docker_file() -> None:
    forced = {row.key for row in CONFIG_KEYS if row.docker == "forced"}
    assert forced == {"port", "host", "modelDir", "dbFile", "toolDir", "toolEnvDir", "engineDir"}
