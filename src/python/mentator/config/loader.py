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
from urllib.parse import urlsplit

from mentator.backends.layout import resolve_engine_dir
from mentator.config.jsonc import JsoncError, NewMember, insert_members, parse_jsonc
from mentator.config.keys import (
    API_KEYS_ENV,
    BACKEND_VALUES,
    CONFIG_KEYS,
    DOCKER_DATA_ROOT,
    DOCKER_FILE_KEYS,
    KEYS_BY_NAME,
    LOG_KEYS,
    LOG_LEVELS,
    ConfigKey,
)
from mentator.config.options import JSON_DEFAULTS, SPECS_BY_KEY, option_problem, parse_options
from mentator.config.settings import LogSettings, Settings, log_settings_from, settings_from
from mentator.config.template import docker_members, docker_template_text, write_template

_LOG_KEY_NAMES = tuple(row.key for row in LOG_KEYS)


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
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not float(value).is_integer()
            or not low <= value <= high
        ):
            self.problem(full_key, f"an integer {low}..{high}", value)
            return None
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

    def value(self, data: Mapping[str, object], row: ConfigKey, prefix: str = "") -> object:
        """The checked value of ``row`` in ``data`` (None when absent, null or invalid)."""
        full_key = prefix + row.key
        raw = data.get(row.key)
        if raw is None:
            return None
        if row.kind == "integer":
            assert row.minimum is not None and row.maximum is not None
            return self.integer(data, row.key, full_key, row.minimum, row.maximum)
        if row.kind in ("string", "path"):
            return self.string(data, row.key, full_key)
        if row.kind == "url":
            if isinstance(raw, str) and is_service_url(raw):
                return raw.strip().rstrip("/")
            self.problem(full_key, row.expected(), raw)
            return None
        if row.kind in ("options", "log"):
            return self.section(data, row.key)
        if row.kind == "boolean" and isinstance(raw, bool):
            return raw
        if row.kind == "level" and raw in LOG_LEVELS:
            return raw
        if row.kind == "backend" and raw in BACKEND_VALUES:
            return raw
        if row.kind == "strings":
            if isinstance(raw, list) and all(isinstance(i, str) and i.strip() for i in raw):
                return tuple(item.strip() for item in raw)
            # The values are secrets (API keys): the message names the shape, never the value.
            shape = "a list with an empty or non-string item" if isinstance(raw, list) else "a "
            if not isinstance(raw, list):
                shape += {"str": "string", "dict": "object"}.get(type(raw).__name__, "value")
            self.problems.append(f'key "{full_key}": expected {row.expected()}, got {shape}')
            return None
        self.problem(full_key, row.expected(), raw)
        return None

    def log(self, raw: dict[str, object] | None, *, required: bool) -> LogSettings:
        section = raw or {}
        if required and raw is not None:
            for row in LOG_KEYS:
                if row.required and section.get(row.key) is None:
                    self.missing(f"log.{row.key}", row.required_hint)
        self.unknown_keys(section, _LOG_KEY_NAMES, "log.")
        fields: dict[str, object] = {}
        for row in LOG_KEYS:
            value = self.value(section, row, "log.")
            fields[row.field] = row.default if value is None else value
        return log_settings_from(fields)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.path, self.problems)


def is_service_url(text: str) -> bool:
    """``http(s)://host[:port][/path]``: what a service base URL may be (nothing that could send
    credentials or parameters along)."""
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment or parts.username or parts.password)
    )


def with_env_api_keys(configured: object, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The file's `apiKeys` plus the comma-separated keys of `MENTATOR_API_KEYS` (both count;
    the variable lets a container get keys without editing its config file)."""
    keys = list(configured) if isinstance(configured, tuple) else []
    for item in environ.get(API_KEYS_ENV, "").split(","):
        if item.strip() and item.strip() not in keys:
            keys.append(item.strip())
    return tuple(keys)


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


def _fields(
    checks: _Checks, data: Mapping[str, object], rows: Sequence[ConfigKey], *, strict: bool
) -> dict[str, object]:
    """Settings field → checked value (the row's default when absent) for ``rows``; ``strict``
    (--conf-use) requires the required keys of sections too."""
    fields: dict[str, object] = {}
    for row in rows:
        if row.kind == "options":
            fields[row.field] = checks.options(checks.section(data, row.key))
        elif row.kind == "log":
            section = checks.section(data, row.key)
            fields[row.field] = checks.log(section, required=strict and row.required)
        else:
            value = checks.value(data, row)
            fields[row.field] = row.default if value is None else value
    return fields


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
    for row in CONFIG_KEYS:
        if row.required and data.get(row.key) is None:
            checks.missing(row.key, row.required_hint)
    checks.unknown_keys(data, frozenset(KEYS_BY_NAME), "")
    fields = _fields(checks, data, CONFIG_KEYS, strict=True)
    checks.raise_if_any()
    for row in CONFIG_KEYS:
        if row.kind == "path" and fields[row.field] is not None and row.key != "engineDir":
            fields[row.field] = base / str(fields[row.field])
    engine = fields["engine_dir"]
    fields["engine_dir"] = resolve_engine_dir(str(engine) if engine else None, env, base)
    fields["api_keys"] = with_env_api_keys(fields["api_keys"], env)
    return settings_from(
        fields, config_file=config_file, mode="use", warnings=tuple(checks.warnings)
    )


def _docker_forced(data_root: Path, environ: Mapping[str, str]) -> dict[ConfigKey, object]:
    """The keys the image fixes, with their values."""
    return {row: row.forced(data_root, environ) for row in CONFIG_KEYS if row.forced is not None}


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

    forced = _docker_forced(data_root, env)
    for row, value in forced.items():
        if row.key in data:
            checks.warn(
                f'key "{row.key}" has no effect in docker mode: the image fixes it to'
                f" {row.forced_note or value}; remove it"
            )
    forced_keys = {row.key for row in forced}
    checks.unknown_keys(
        {k: v for k, v in data.items() if k not in forced_keys},
        tuple(row.key for row in DOCKER_FILE_KEYS),
        "",
    )
    fields = _fields(checks, data, DOCKER_FILE_KEYS, strict=False)
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

    fields.update({row.field: value for row, value in forced.items()})
    fields["api_keys"] = with_env_api_keys(fields["api_keys"], env)
    return settings_from(
        fields, config_file=config_file, mode="docker", warnings=tuple(checks.warnings)
    )
