"""What the rest of the program reads from the configuration (built by `config.loader`).

One field per row of `config.keys.CONFIG_KEYS` (its ``field``), plus where the values came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    # Placed after the fields without defaults; filled from the `apiKeys` row plus the
    # environment (`config.loader.with_env_api_keys`).
    api_keys: tuple[str, ...] = field(default=())
