"""What the rest of the program reads from the configuration (built by `config.loader`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LogLevel = Literal["error", "debug", "trace"]
ConfigMode = Literal["use", "docker"]

DEFAULT_PORT = 19777
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PARALLEL = 4
DEFAULT_QUEUE_LIMIT = 64


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
