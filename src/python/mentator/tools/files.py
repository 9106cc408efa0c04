"""Tool files (``*.tool.txt``) and tool environments (``*.toolenv.txt``): reading, validating,
naming (reference §5.1-5.2).

Discovery follows the models' rules (`models.discovery.walk_files`): recursive, depth-first,
byte-sorted, suffix matched case-insensitively, empty files skipped, a basename seen earlier
becomes ``<basename> (<relative dir>)``; names keep their suffix (``example-math.tool.txt``);
lookup is case-insensitive with or without the suffix. An invalid file is skipped and its
problem reported in the original's words (prefix ``tool "<name>": `` / ``env tool "<name>": ``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

import jsonschema
import jsonschema.exceptions

from mentator.models.discovery import walk_files

TOOL_SUFFIX = ".tool.txt"
ENV_SUFFIX = ".toolenv.txt"
LANGUAGES = ("JS", "PY")

# `{{ name }}`: two braces, one or more non-`}` characters, two braces; the name is trimmed.
PLACEHOLDER = re.compile(r"\{\{([^}]+)\}\}")


@dataclass(frozen=True)
class ToolFile:
    """A valid tool: ``spec`` is the parameter schema (an object schema), ``code`` its body."""

    name: str
    relative_file_name: str
    path: Path
    spec: dict[str, Any]
    lang: str
    code: str

    @property
    def description(self) -> str:
        return str(self.spec.get("description") or "")

    def placeholders(self) -> list[str]:
        """The env names the code refers to (``{{name}}``), in order, without repeats."""
        names: list[str] = []
        for match in PLACEHOLDER.finditer(self.code):
            name = match.group(1).strip()
            if name not in names:
                names.append(name)
        return names


@dataclass(frozen=True)
class ToolEnv:
    name: str
    path: Path
    value: Any


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_Named)


class ToolFileError(ValueError):
    """A tool file that is skipped; the message is the original's, without the prefix."""


def _sections(text: str) -> dict[str, tuple[str, str]]:
    """``{"spec": ("", text), "code": (lang, text)}`` for the sections present."""
    sections: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.rstrip() == "$$spec":
            current = []
            sections["spec"] = ("", current)  # a later section replaces an earlier one
        elif line.startswith("$$code="):
            current = []
            sections["code"] = (line[len("$$code=") :].strip(), current)
        elif current is not None:
            current.append(line)
    return {kind: (lang, "\n".join(lines).strip()) for kind, (lang, lines) in sections.items()}


def _spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise ToolFileError(f"invalid $$spec - {error}") from error
    if not isinstance(spec, dict):
        raise ToolFileError("invalid $$spec - tool spec must be a JSON object")
    if spec.get("type") != "object":
        raise ToolFileError('invalid $$spec - tool spec root type must be "object"')
    try:
        jsonschema.validators.validator_for(spec).check_schema(spec)
    except jsonschema.exceptions.SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        raise ToolFileError(
            f"invalid $$spec - schema{'/' + where if where else ''} {error.message}"
        ) from error
    return spec


def parse_tool(name: str, relative: str, path: Path, text: str) -> ToolFile:
    """A tool from its file text; `ToolFileError` with the original's message when invalid."""
    sections = _sections(text)
    if "spec" not in sections:
        raise ToolFileError("missing $$spec section")
    spec = _spec(sections["spec"][1])
    if "code" not in sections:
        raise ToolFileError("missing $$code section")
    lang, code = sections["code"]
    if lang not in LANGUAGES:
        raise ToolFileError(f'unknown lang "{lang}"')
    if not code:
        raise ToolFileError(f"$$code=={lang} section is empty")  # sic: the original's "=="
    return ToolFile(name, relative, path, spec, lang, code)


def _named_files(root: Path, suffix: str) -> Iterable[tuple[str, str, Path]]:
    seen: set[str] = set()
    for path, file_stat in walk_files(root):
        if not path.name.lower().endswith(suffix) or file_stat.st_size <= 0:
            continue
        relative = PurePosixPath(*path.relative_to(root).parts)
        name = path.name
        if name in seen:
            name = f"{name} ({relative.parent})"
        seen.add(name)
        yield name, str(relative), path.absolute()


def scan_tools(root: Path) -> tuple[list[ToolFile], list[str]]:
    """Valid tools under ``root`` and one message per skipped file (`ModelScanError` when
    ``root`` itself cannot be listed)."""
    tools: list[ToolFile] = []
    problems: list[str] = []
    for name, relative, path in _named_files(root, TOOL_SUFFIX):
        try:
            tools.append(parse_tool(name, relative, path, path.read_text(encoding="utf-8")))
        except ToolFileError as error:
            problems.append(f'tool "{name}": {error}')
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f'tool "{name}": on read file: {error}')
    return tools, problems


def scan_envs(root: Path) -> tuple[list[ToolEnv], list[str]]:
    """Tool environments under ``root`` (strict JSON, any value) and the skipped files' messages."""
    envs: list[ToolEnv] = []
    problems: list[str] = []
    for name, _relative, path in _named_files(root, ENV_SUFFIX):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            # Never the content: it holds secrets.
            problems.append(f'env tool "{name}": SyntaxError: {_position(error)}')
            continue
        except OSError as error:
            problems.append(f'env tool "{name}": on read file: {error}')
            continue
        envs.append(ToolEnv(name, path, value))
    return envs, problems


def _position(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return "not valid UTF-8 JSON"


def find_named(items: Sequence[Named], requested: str, suffix: str) -> Named | None:
    """Case-insensitive exact name first, then ``<requested><suffix>``."""
    wanted = requested.casefold()
    for item in items:
        if item.name.casefold() == wanted:
            return item
    for item in items:
        if item.name.casefold() == wanted + suffix:
            return item
    return None
