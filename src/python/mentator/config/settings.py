"""What the rest of the program reads from the configuration (built by `config.loader`).

One field per row of `config.keys.CONFIG_KEYS` (its ``field``), plus where the values came from.
The loader checks a file row by row, so it holds the values as ``field name → object``;
`settings_from` turns them into `Settings` with each value read back at its type (`CheckedValues`):
a value of the wrong type, a field without a value or a value without a field is a bug of the
loader or of the key table, and raises `TypeError` naming it, instead of a silently wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

LogLevel = Literal["error", "debug", "trace"]
ConfigMode = Literal["use", "docker"]


@dataclass(frozen=True)
class LogSettings:
    """`log` section: console/DB threshold, retention days, whether successes are stored."""

    level: LogLevel
    live_day: int
    save_prompt: bool


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one service run.

    `default_options` is complete: the file's `defaultOptions` over the JSON option defaults
    (reference §2.3); `seed` is present only when configured. `warnings` holds what the loader
    noticed but tolerated (unknown keys, docker-forced keys), for the service to log at start.
    """

    port: int
    host: str
    model_dir: Path
    db_file: Path
    tool_dir: Path | None
    tool_env_dir: Path | None
    default_options: dict[str, object]
    log: LogSettings
    engine_dir: Path | None
    parallel: int
    queue_limit: int
    threads: int | None
    config_file: Path | None
    mode: ConfigMode
    warnings: tuple[str, ...] = field(default=())
    tool_timeout_msec: int = 30000
    drain_grace_msec: int = 25000
    drain_notice_msec: int = 0
    compact_json: bool = True
    grammar_repeat_penalty: bool = False
    cancel_on_disconnect: bool = False
    grammar_dry: bool = True
    cut_off_retry: bool = True
    # Placed after the fields without defaults; filled from the `apiKeys` row plus the
    # environment (`config.loader.with_env_api_keys`).
    api_keys: tuple[str, ...] = field(default=())
    max_loaded_models: int = 3
    memory_budget_mb: int = 0
    vram_budget_mb: int = 0
    keep_alive_sec: int = -1
    swap_grouping: bool = True
    warm_swap_mb: int = 0
    pinned_models: tuple[str, ...] = field(default=())
    # Shadow traffic (`replay.shadow`): off while shadow_url is None.
    shadow_url: str | None = None
    shadow_percent: int = 10
    shadow_queue: int = 100
    shadow_api_key: str | None = None
    # Config `backend`: "auto" or a forced tier (`config.keys.BACKEND_VALUES`).
    backend: str = "auto"


_LEVELS: dict[object, LogLevel] = {level: level for level in get_args(LogLevel)}


class CheckedValues:
    """The loader's checked values by field name, each read once at its type."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = dict(values)
        self._unread = set(self._values)

    def _read(self, name: str) -> object:
        if name not in self._values:
            raise TypeError(f"config field {name!r} has no value (a key row is missing)")
        self._unread.discard(name)
        return self._values[name]

    def _wrong(self, name: str, expected: str) -> TypeError:
        value = self._values[name]
        return TypeError(f"config field {name!r}: expected {expected}, got {value!r}")

    def integer(self, name: str) -> int:
        value = self._read(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._wrong(name, "an integer")

    def optional_integer(self, name: str) -> int | None:
        return None if self._read(name) is None else self.integer(name)

    def text(self, name: str) -> str:
        value = self._read(name)
        if isinstance(value, str):
            return value
        raise self._wrong(name, "a string")

    def optional_text(self, name: str) -> str | None:
        return None if self._read(name) is None else self.text(name)

    def boolean(self, name: str) -> bool:
        value = self._read(name)
        if isinstance(value, bool):
            return value
        raise self._wrong(name, "true or false")

    def path(self, name: str) -> Path:
        value = self._read(name)
        if isinstance(value, Path):
            return value
        raise self._wrong(name, "a Path")

    def optional_path(self, name: str) -> Path | None:
        return None if self._read(name) is None else self.path(name)

    def mapping(self, name: str) -> dict[str, object]:
        value = self._read(name)
        if isinstance(value, dict) and all(isinstance(key, str) for key in value):
            return value
        raise self._wrong(name, "an object with string keys")

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._read(name)
        if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
            return value
        raise self._wrong(name, "a tuple of strings")

    def level(self, name: str) -> LogLevel:
        level = _LEVELS.get(self._read(name))
        if level is not None:
            return level
        raise self._wrong(name, " or ".join(_LEVELS.values()))

    def log(self, name: str) -> LogSettings:
        value = self._read(name)
        if isinstance(value, LogSettings):
            return value
        raise self._wrong(name, "LogSettings")

    def all_read(self) -> None:
        """Every value was used: a key row whose field is not read here is an error."""
        if self._unread:
            raise TypeError(f"config fields without a Settings field: {sorted(self._unread)}")


def log_settings_from(values: Mapping[str, object]) -> LogSettings:
    """The `log` section's checked values (`config.keys.LOG_KEYS` fields) as `LogSettings`."""
    read = CheckedValues(values)
    log = LogSettings(
        level=read.level("level"),
        live_day=read.integer("live_day"),
        save_prompt=read.boolean("save_prompt"),
    )
    read.all_read()
    return log


def settings_from(
    values: Mapping[str, object],
    *,
    config_file: Path | None,
    mode: ConfigMode,
    warnings: tuple[str, ...],
) -> Settings:
    """The checked values of every `config.keys.CONFIG_KEYS` row (by ``field``) as `Settings`."""
    read = CheckedValues(values)
    settings = Settings(
        port=read.integer("port"),
        host=read.text("host"),
        model_dir=read.path("model_dir"),
        db_file=read.path("db_file"),
        tool_dir=read.optional_path("tool_dir"),
        tool_env_dir=read.optional_path("tool_env_dir"),
        default_options=read.mapping("default_options"),
        log=read.log("log"),
        engine_dir=read.optional_path("engine_dir"),
        parallel=read.integer("parallel"),
        queue_limit=read.integer("queue_limit"),
        threads=read.optional_integer("threads"),
        config_file=config_file,
        mode=mode,
        warnings=warnings,
        tool_timeout_msec=read.integer("tool_timeout_msec"),
        drain_grace_msec=read.integer("drain_grace_msec"),
        drain_notice_msec=read.integer("drain_notice_msec"),
        compact_json=read.boolean("compact_json"),
        grammar_repeat_penalty=read.boolean("grammar_repeat_penalty"),
        cancel_on_disconnect=read.boolean("cancel_on_disconnect"),
        grammar_dry=read.boolean("grammar_dry"),
        cut_off_retry=read.boolean("cut_off_retry"),
        api_keys=read.strings("api_keys"),
        max_loaded_models=read.integer("max_loaded_models"),
        memory_budget_mb=read.integer("memory_budget_mb"),
        vram_budget_mb=read.integer("vram_budget_mb"),
        keep_alive_sec=read.integer("keep_alive_sec"),
        swap_grouping=read.boolean("swap_grouping"),
        warm_swap_mb=read.integer("warm_swap_mb"),
        pinned_models=read.strings("pinned_models"),
        shadow_url=read.optional_text("shadow_url"),
        shadow_percent=read.integer("shadow_percent"),
        shadow_queue=read.integer("shadow_queue"),
        shadow_api_key=read.optional_text("shadow_api_key"),
        backend=read.text("backend"),
    )
    read.all_read()
    return settings
