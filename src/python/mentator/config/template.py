"""The commented configuration templates: every key, its default and what it does.

The same member lists serve three uses: `--conf-gen` (full template), the first start of
`--conf-docker` (docker subset), and the re-insertion of keys missing from a docker file.
"""

from __future__ import annotations

from pathlib import Path

from mentator.config.jsonc import NewMember, render_document
from mentator.config.options import JSON_DEFAULTS, OPTION_SPECS
from mentator.config.settings import (
    DEFAULT_HOST,
    DEFAULT_PARALLEL,
    DEFAULT_PORT,
    DEFAULT_QUEUE_LIMIT,
    LogLevel,
)

TEMPLATE_FILE_NAME = "mentator-llm-service.config.TEMPLATE.jsonc"
LOG_LEVELS = ("error", "debug", "trace")
DEFAULT_LOG_LEVEL: LogLevel = "debug"
DEFAULT_LIVE_DAY = 30
PARALLEL_RANGE = (1, 64)
QUEUE_LIMIT_RANGE = (0, 100_000)
THREADS_RANGE = (1, 1024)
ENGINE_DIR_ENV = "MENTATOR_ENGINE_DIR"


def option_members() -> tuple[NewMember, ...]:
    """Every generation option with its JSON default (`seed` as null = random)."""
    members: list[NewMember] = []
    for spec in OPTION_SPECS:
        default = JSON_DEFAULTS.get(spec.key)
        members.append(NewMember(spec.key, default, f"{spec.description} ({spec.expected()})"))
    return tuple(members)


def log_members() -> tuple[NewMember, ...]:
    return (
        NewMember(
            "level",
            DEFAULT_LOG_LEVEL,
            '"error" = errors only, "debug" = errors and debug, "trace" = everything',
        ),
        NewMember(
            "liveDay",
            DEFAULT_LIVE_DAY,
            "days to keep core and chat log rows in the database (an integer 1..365)",
        ),
        NewMember(
            "savePrompt",
            False,
            "also store successful /prompt exchanges in the chat log (errors are always stored)",
        ),
    )


def engine_members() -> tuple[NewMember, ...]:
    """The tunables added by the port (not in the original's config)."""
    return (
        NewMember(
            "parallel",
            DEFAULT_PARALLEL,
            "requests llama-server runs at once (its slots;"
            f" an integer {PARALLEL_RANGE[0]}..{PARALLEL_RANGE[1]})",
        ),
        NewMember(
            "queueLimit",
            DEFAULT_QUEUE_LIMIT,
            "requests that may wait for a slot; more get HTTP 503"
            f" (an integer {QUEUE_LIMIT_RANGE[0]}..{QUEUE_LIMIT_RANGE[1]})",
        ),
        NewMember(
            "threads",
            None,
            "CPU threads for llama-server; null = let llama-server decide"
            f" (an integer {THREADS_RANGE[0]}..{THREADS_RANGE[1]})",
        ),
    )


def section_members() -> tuple[NewMember, ...]:
    """`defaultOptions` and `log`: the keys both config files share."""
    return (
        NewMember(
            "defaultOptions",
            option_members(),
            "generation options used when a request does not name them"
            " (a request's options are merged over these)",
        ),
        NewMember("log", log_members(), "logging to the console and to the database"),
    )


def full_members() -> tuple[NewMember, ...]:
    """Every key of a `--conf-use` file, in template order."""
    return (
        NewMember("port", DEFAULT_PORT, "HTTP port (an integer 1..65535)"),
        NewMember("host", DEFAULT_HOST, "address to listen on; 0.0.0.0 = every interface"),
        NewMember(
            "modelDir",
            "path/to/models",
            "folder scanned recursively for *.gguf models"
            " (relative paths start at the current directory)",
        ),
        NewMember(
            "dbFile",
            "path/to/mentator-llm-service.db",
            "SQLite file for logs (folders are created)",
        ),
        NewMember("toolDir", None, "folder with *.tool.txt server-side tools; null = no tools"),
        NewMember("toolEnvDir", None, "folder with *.toolenv.txt tool environments; null = none"),
        NewMember(
            "engineDir",
            None,
            "folder holding llama-server (cpu build in its root, cuda/, rocm/, vulkan/ beside);"
            f" the environment variable {ENGINE_DIR_ENV} overrides it;"
            " null = use only that variable",
        ),
        *engine_members(),
        *section_members(),
    )


def docker_members() -> tuple[NewMember, ...]:
    """Keys of the docker config file: paths and port are fixed by the image, so they are absent."""
    return (*engine_members(), *section_members())


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
