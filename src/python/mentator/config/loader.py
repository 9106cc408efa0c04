"""Load and check configuration files: `--conf-gen`, `--conf-use` and `--conf-docker`.

Differences from the original, all deliberate (port.md "Fix"):
* every problem in a file is reported at once, each naming the file, the key and what to write;
* `null` is accepted for optional keys (it means "the default");
* `--conf-use` never writes the user's file (the original re-formatted it in place);
* `--conf-docker` adds missing keys by inserting text, so comments, formatting and unknown keys
  survive byte for byte, and the image's fixed port/paths cannot be overridden from the file.
Relative paths in a `--conf-use` file are taken from the current directory, as the original did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mentator.config.jsonc import JsoncError, NewMember, insert_members, parse_jsonc
from mentator.config.options import JSON_DEFAULTS, SPECS_BY_KEY, option_problem, parse_options
from mentator.config.settings import (
    DEFAULT_HOST,
    DEFAULT_PARALLEL,
    DEFAULT_PORT,
    DEFAULT_QUEUE_LIMIT,
    LogLevel,
    LogSettings,
    Settings,
)
from mentator.config.template import (
    DEFAULT_LIVE_DAY,
    DEFAULT_LOG_LEVEL,
    ENGINE_DIR_ENV,
    LOG_LEVELS,
    PARALLEL_RANGE,
    QUEUE_LIMIT_RANGE,
    THREADS_RANGE,
    docker_members,
    docker_template_text,
    write_template,
)

DOCKER_DATA_ROOT = Path("/opt/mentator-llm-service/data")
DOCKER_PORT = DEFAULT_PORT
DOCKER_DB_FILE_NAME = "mentator-llm-service.db"

_USE_KEYS = frozenset(
    {
        "port",
        "host",
        "modelDir",
        "dbFile",
        "toolDir",
        "toolEnvDir",
        "engineDir",
        "parallel",
        "queueLimit",
        "threads",
        "defaultOptions",
        "log",
    }
)
_DOCKER_KEYS = frozenset({"parallel", "queueLimit", "threads", "defaultOptions", "log"})
_LOG_KEYS = ("level", "liveDay", "savePrompt")


class ConfigError(Exception):
    """A configuration file cannot be used; `problems` lists every reason found."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(f'config "{path}": {problem}' for problem in self.problems))


def _got(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checks:
    """Collects problems and warnings while a parsed file is read; one instance per load."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, key: str, expected: str, value: object) -> None:
        self.problems.append(f'key "{key}": expected {expected}, got {_got(value)}')

    def missing(self, key: str, hint: str) -> None:
        self.problems.append(f'key "{key}": missing; add it ({hint})')

    def warn(self, text: str) -> None:
        self.warnings.append(f'config "{self.path}": {text}')

    def integer(
        self, data: Mapping[str, object], key: str, full_key: str, low: int, high: int
    ) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        integral = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and float(value).is_integer()
        )
        if not integral or not low <= value <= high:  # type: ignore[operator]
            self.problem(full_key, f"an integer {low}..{high}", value)
            return None
        assert isinstance(value, int | float)
        return int(value)

    def string(self, data: Mapping[str, object], key: str, full_key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(full_key, "a non-empty string", value)
            return None
        return value

    def section(self, data: Mapping[str, object], key: str) -> dict[str, object] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, "an object { ... }", value)
            return None
        return value

    def unknown_keys(
        self, data: Mapping[str, object], known: frozenset[str] | Sequence[str], prefix: str
    ) -> None:
        for key in data:
            if key not in known:
                self.warn(f'key "{prefix}{key}" is unknown and ignored')

    def options(self, raw: dict[str, object] | None) -> dict[str, object]:
        """Checked `defaultOptions`, completed with the JSON option defaults."""
        given = raw or {}
        for key, value in given.items():
            spec = SPECS_BY_KEY.get(key)
            if spec is None:
                self.warn(f'key "defaultOptions.{key}" is not a generation option and is ignored')
                continue
            if value is None:
                continue
            found = option_problem(spec, value)
            if found is not None:
                sub_path = found[0].replace("/", ".")
                item = f" for every item of {spec.key}" if sub_path else ""
                self.problem(f"defaultOptions.{key}{sub_path}", f"{spec.expected()}{item}", value)
        return parse_options(given, fill=True, defaults=JSON_DEFAULTS)

    def log(self, raw: dict[str, object] | None, *, required: bool) -> LogSettings:
        section = raw or {}
        if required and raw is not None:
            hints = {
                "level": '"error", "debug" or "trace"',
                "liveDay": "days, 1..365",
                "savePrompt": "true or false",
            }
            for key in _LOG_KEYS:
                if section.get(key) is None:
                    self.missing(f"log.{key}", hints[key])
        self.unknown_keys(section, _LOG_KEYS, "log.")
        level: LogLevel = DEFAULT_LOG_LEVEL
        raw_level = section.get("level")
        if raw_level is not None:
            if raw_level == "error" or raw_level == "debug" or raw_level == "trace":
                level = raw_level
            else:
                self.problem(
                    "log.level", " or ".join(f'"{name}"' for name in LOG_LEVELS), raw_level
                )
        live_day = self.integer(section, "liveDay", "log.liveDay", 1, 365)
        save_prompt = section.get("savePrompt")
        if save_prompt is not None and not isinstance(save_prompt, bool):
            self.problem("log.savePrompt", "true or false", save_prompt)
            save_prompt = None
        return LogSettings(
            level=level,
            live_day=live_day if live_day is not None else DEFAULT_LIVE_DAY,
            save_prompt=bool(save_prompt),
        )

    def tunables(self, data: Mapping[str, object]) -> tuple[int, int, int | None]:
        parallel = self.integer(data, "parallel", "parallel", *PARALLEL_RANGE)
        queue_limit = self.integer(data, "queueLimit", "queueLimit", *QUEUE_LIMIT_RANGE)
        threads = self.integer(data, "threads", "threads", *THREADS_RANGE)
        return (
            parallel if parallel is not None else DEFAULT_PARALLEL,
            queue_limit if queue_limit is not None else DEFAULT_QUEUE_LIMIT,
            threads,
        )

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.path, self.problems)


def _absolute(path: Path | str) -> Path:
    # Normalised but symlinks kept: messages show the path the user gave, made absolute.
    return Path(os.path.normpath(Path(path).absolute()))


def _read_object(path: Path) -> tuple[str, dict[str, object]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            path, ["file not found; create one with --conf-gen <folder> and edit it"]
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            path, [f"not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"]
        ) from None
    except OSError as err:
        raise ConfigError(
            path, [f"cannot read the file: {err.strerror or err}; check its permissions"]
        ) from None
    try:
        data = parse_jsonc(text)
    except JsoncError as err:
        raise ConfigError(path, [f"not valid JSON with comments: {err}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            path, [f"expected an object {{ ... }} at the top level, got {_got(data)}"]
        )
    return text, data


def _engine_dir(configured: str | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    from_env = environ.get(ENGINE_DIR_ENV, "").strip()
    if from_env:
        return _absolute(from_env)
    return cwd / configured if configured else None


def generate_template(directory: Path) -> Path:
    """`--conf-gen`: write the complete commented template into `directory`; return its path."""
    target = _absolute(directory)
    try:
        return write_template(target)
    except OSError as err:
        raise ConfigError(
            target,
            [f"cannot write the template here: {err.strerror or err}; pick a writable folder"],
        ) from None


def load_use(
    path: Path | str,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """`--conf-use`: read and check a full config file; the file is never written."""
    config_file = _absolute(path)
    env = os.environ if environ is None else environ
    base = _absolute(cwd or Path.cwd())
    _, data = _read_object(config_file)
    checks = _Checks(config_file)

    required_hints = {
        "port": "the HTTP port, e.g. 19777",
        "modelDir": 'the folder with *.gguf models, e.g. "path/to/models"',
        "dbFile": 'the SQLite log file, e.g. "path/to/mentator-llm-service.db"',
        "defaultOptions": "an object of generation options, {} for the defaults",
        "log": '{"level": "debug", "liveDay": 30, "savePrompt": false}',
    }
    for key, hint in required_hints.items():
        if data.get(key) is None:
            checks.missing(key, hint)
    checks.unknown_keys(data, _USE_KEYS, "")

    port = checks.integer(data, "port", "port", 1, 65535)
    host = checks.string(data, "host", "host")
    model_dir = checks.string(data, "modelDir", "modelDir")
    db_file = checks.string(data, "dbFile", "dbFile")
    tool_dir = checks.string(data, "toolDir", "toolDir")
    tool_env_dir = checks.string(data, "toolEnvDir", "toolEnvDir")
    engine_dir = checks.string(data, "engineDir", "engineDir")
    parallel, queue_limit, threads = checks.tunables(data)
    options = checks.options(checks.section(data, "defaultOptions"))
    log = checks.log(checks.section(data, "log"), required=True)
    checks.raise_if_any()
    assert model_dir is not None and db_file is not None and port is not None

    return Settings(
        port=port,
        host=host or DEFAULT_HOST,
        model_dir=base / model_dir,
        db_file=base / db_file,
        tool_dir=base / tool_dir if tool_dir else None,
        tool_env_dir=base / tool_env_dir if tool_env_dir else None,
        default_options=options,
        log=log,
        engine_dir=_engine_dir(engine_dir, env, base),
        parallel=parallel,
        queue_limit=queue_limit,
        threads=threads,
        config_file=config_file,
        mode="use",
        warnings=tuple(checks.warnings),
    )


def _docker_forced(data_root: Path) -> dict[str, str]:
    """Keys the image fixes, with the value used (for the warning text)."""
    return {
        "port": str(DOCKER_PORT),
        "host": DEFAULT_HOST,
        "modelDir": str(data_root / "models"),
        "dbFile": str(data_root / DOCKER_DB_FILE_NAME),
        "toolDir": str(data_root / "tools"),
        "toolEnvDir": str(data_root / "toolsenv"),
        "engineDir": f"the {ENGINE_DIR_ENV} environment variable",
    }


def _missing_members(data: Mapping[str, object]) -> list[tuple[tuple[str, ...], list[NewMember]]]:
    """Per object path, the template members the file lacks (nested objects first)."""
    plan: list[tuple[tuple[str, ...], list[NewMember]]] = []
    top_missing: list[NewMember] = []
    for member in docker_members():
        if member.key not in data:
            top_missing.append(member)
        elif isinstance(member.value, tuple) and isinstance(data[member.key], dict):
            present = data[member.key]
            assert isinstance(present, dict)
            nested = [child for child in member.value if child.key not in present]
            if nested:
                plan.append(((member.key,), nested))
    if top_missing:
        plan.append(((), top_missing))
    return plan


def _write_or_explain(path: Path, text: str, action: str) -> None:
    # Written in place, not via rename: the file keeps its owner and mode, and a single file
    # bind-mounted into a container cannot be replaced by a rename.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    except OSError as err:
        raise ConfigError(
            path,
            [
                f"cannot {action}: {err.strerror or err}; make the file and its folder writable"
                " (in Docker: check the owner and mode of the mounted data volume)"
            ],
        ) from None


def load_docker(
    path: Path | str,
    *,
    data_root: Path = DOCKER_DATA_ROOT,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """`--conf-docker`: create or complete the docker config file, check it, build Settings.

    Port, host and the data paths are fixed (under `data_root`); a file that sets them gets a
    warning and no effect. `engine_dir` comes from the environment only.
    """
    config_file = _absolute(path)
    env = os.environ if environ is None else environ
    try:
        needs_template = not config_file.read_bytes().strip()
    except (FileNotFoundError, NotADirectoryError):
        needs_template = True
    except OSError as err:
        raise ConfigError(
            config_file, [f"cannot read the file: {err.strerror or err}; check its permissions"]
        ) from None
    if needs_template:
        _write_or_explain(config_file, docker_template_text(), "create the docker config file")
    text, data = _read_object(config_file)
    checks = _Checks(config_file)

    forced = _docker_forced(data_root)
    for key in data:
        if key in forced:
            checks.warn(
                f'key "{key}" has no effect in docker mode: the image fixes it to {forced[key]};'
                " remove it"
            )
    checks.unknown_keys({k: v for k, v in data.items() if k not in forced}, _DOCKER_KEYS, "")
    parallel, queue_limit, threads = checks.tunables(data)
    options = checks.options(checks.section(data, "defaultOptions"))
    log = checks.log(checks.section(data, "log"), required=False)
    checks.raise_if_any()

    edited = text
    for object_path, members in _missing_members(data):
        edited = insert_members(edited, object_path, members)
    if edited != text:
        try:
            parse_jsonc(edited)
        except JsoncError as err:  # a scanner bug must never corrupt the user's file
            checks.warn(
                f"missing keys were not added (internal error: {err}); the file is unchanged"
            )
        else:
            _write_or_explain(config_file, edited, "add the missing keys to the docker config file")

    from_env = env.get(ENGINE_DIR_ENV, "").strip()
    return Settings(
        port=DOCKER_PORT,
        host=DEFAULT_HOST,
        model_dir=data_root / "models",
        db_file=data_root / DOCKER_DB_FILE_NAME,
        tool_dir=data_root / "tools",
        tool_env_dir=data_root / "toolsenv",
        default_options=options,
        log=log,
        engine_dir=_absolute(from_env) if from_env else None,
        parallel=parallel,
        queue_limit=queue_limit,
        threads=threads,
        config_file=config_file,
        mode="docker",
        warnings=tuple(checks.warnings),
    )
