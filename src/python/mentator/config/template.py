"""The commented configuration templates, written from the key table (`keys.py`) and the option
table (`options.OPTION_SPECS`): every key, its default and what it does.

The same member lists serve three uses: `--conf-gen` (full template), the first start of
`--conf-docker` (docker subset), and the re-insertion of keys missing from a docker file.
"""

from __future__ import annotations

from pathlib import Path

from mentator.config.jsonc import NewMember, render_document
from mentator.config.keys import CONFIG_KEYS, DOCKER_FILE_KEYS, LOG_KEYS, ConfigKey
from mentator.config.options import JSON_DEFAULTS, OPTION_SPECS

TEMPLATE_FILE_NAME = "mentator-llm-service.config.TEMPLATE.jsonc"


def option_members() -> tuple[NewMember, ...]:
    """Every generation option with its JSON default (`seed` as null = random)."""
    return tuple(
        NewMember(spec.key, JSON_DEFAULTS.get(spec.key), f"{spec.description} ({spec.expected()})")
        for spec in OPTION_SPECS
    )


def _member(row: ConfigKey) -> NewMember:
    if row.kind == "options":
        return NewMember(row.key, option_members(), row.help)
    if row.kind == "log":
        return NewMember(row.key, tuple(_member(child) for child in LOG_KEYS), row.help)
    return NewMember(row.key, row.template_value(), row.help)


def full_members() -> tuple[NewMember, ...]:
    """Every key of a `--conf-use` file, in template order."""
    return tuple(_member(row) for row in CONFIG_KEYS)


def docker_members() -> tuple[NewMember, ...]:
    """Keys of the docker config file: paths and port are fixed by the image, so they are absent."""
    return tuple(_member(row) for row in DOCKER_FILE_KEYS)


FULL_HEADER = (
    "Mentator LLM Service configuration (JSON with comments).\n"
    "Edit modelDir and dbFile, then start: mentator-llm-service --conf-use <this file>"
)

DOCKER_HEADER = (
    "Mentator LLM Service configuration for the Docker image.\n"
    "Port 19777 and the paths under /opt/mentator-llm-service/data are fixed by the image.\n"
    "Keys missing from this file are added back with their defaults on every start."
)


def full_template_text() -> str:
    return render_document(full_members(), FULL_HEADER)


def docker_template_text() -> str:
    return render_document(docker_members(), DOCKER_HEADER)


def write_template(directory: Path) -> Path:
    """Write the full template into `directory` (created if missing); return its path.

    OSError propagates; `loader.generate_template` turns it into a ConfigError.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TEMPLATE_FILE_NAME
    path.write_text(full_template_text(), encoding="utf-8")
    return path
