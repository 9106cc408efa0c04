"""Command line: `--conf-gen DIR | --conf-use FILE | --conf-docker FILE | --detect-hardware`, and
`replay --db FILE --against URL ...` (re-send stored requests to a service: `replay/cli.py`).

Exit codes: 0 success, 1 bad configuration (the original exited 0), 2 usage error. With a valid
configuration the process becomes the service and exits with `run_service`'s code.

Messages of the original (reference §1.1) kept: no argument prints its help (first line
``mentator-llm-service, version <ver>``), and a mode flag without its value prints its
``ERROR: Please provide …`` line. Both then exit 2 instead of the original's 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from mentator.config.loader import ConfigError, generate_template, load_docker, load_use
from mentator.config.settings import Settings
from mentator.version import VERSION

PROGRAM = "mentator-llm-service"
DOCKER_CONFIG_EXAMPLE = "/opt/mentator-llm-service/data/mentator-llm-service.conf.jsonc"
DETECT_HARDWARE_FLAG = "--detect-hardware"
REPLAY_COMMAND = "replay"
EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2

# The original's words for a mode flag given without its value; --conf-docker had none of its
# own (it printed the --conf-use line), so it gets that line with its own example.
MISSING_VALUE: dict[str, str] = {
    "--conf-gen": "Please provide a directory path to generate the config template."
    " Example: --conf-gen /path/to/dir",
    "--conf-use": "Please provide a path to the config file."
    " Example: --conf-use /path/to/config.jsonc",
    "--conf-docker": "Please provide a path to the config file."
    f" Example: --conf-docker {DOCKER_CONFIG_EXAMPLE}",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the original's line in front of argparse's own for a flag without value."""

    def error(self, message: str) -> NoReturn:
        for flag, text in MISSING_VALUE.items():
            if message == f"argument {flag}: expected one argument":
                sys.stderr.write(f"ERROR: {text}\n")
                break
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROGRAM,
        description="Local LLM behind an HTTP API, with JSON answers guaranteed by a JSON Schema.",
        epilog=(
            "Examples:\n"
            f"  {PROGRAM} --conf-gen /path/to/dir\n"
            f"  {PROGRAM} --conf-use /path/to/config.jsonc\n"
            f"  {PROGRAM} --conf-docker {DOCKER_CONFIG_EXAMPLE}\n"
            f"  {PROGRAM} {REPLAY_COMMAND} --db FILE --against URL   (see {REPLAY_COMMAND} --help)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {VERSION}")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--conf-gen",
        metavar="DIR",
        type=Path,
        help="write a complete, commented config template into DIR and exit",
    )
    modes.add_argument(
        "--conf-use",
        metavar="FILE",
        type=Path,
        help="start the service with this config file (JSON with comments; never rewritten)",
    )
    modes.add_argument(
        "--conf-docker",
        metavar="FILE",
        type=Path,
        help="start the service in the Docker image: create or complete FILE;"
        " port and data paths are fixed",
    )
    modes.add_argument(
        DETECT_HARDWARE_FLAG,
        action="store_true",
        help="print the engine backend this machine would use as JSON and exit"
        f" (see {DETECT_HARDWARE_FLAG} --help)",
    )
    return parser


def _detect_hardware(rest: list[str], stderr: TextIO) -> int:
    try:
        from mentator.hardware.cli import main as detect_main
    except ImportError as err:
        stderr.write(f"ERROR: hardware detection is not available in this build: {err}\n")
        return EXIT_CONFIG
    code: int = detect_main(rest)
    return code


def _replay(rest: list[str]) -> int:
    from mentator.replay.cli import main as replay_main

    return replay_main(rest)


def _run(settings: Settings, stderr: TextIO) -> int:
    for warning in settings.warnings:
        stderr.write(f"WARNING: {warning}\n")
    try:
        from mentator.server import run_service
    except ImportError as err:
        stderr.write(f"ERROR: the service cannot start, a module is missing: {err}\n")
        return EXIT_CONFIG
    return run_service(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m mentator` and the PEX; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    if args_list[:1] == [REPLAY_COMMAND]:
        return _replay(args_list[1:])
    if DETECT_HARDWARE_FLAG in args_list:
        # Its own options (e.g. --engine-dir) belong to the hardware CLI, not to this parser.
        rest = [arg for arg in args_list if arg != DETECT_HARDWARE_FLAG]
        if not any(arg.startswith("--conf-") for arg in rest):
            return _detect_hardware(rest, stderr)

    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE

    try:
        if args.conf_gen is not None:
            created = generate_template(args.conf_gen)
            stdout.write(f'config create "{created}"\n')
            return EXIT_OK
        if args.conf_use is not None:
            return _run(load_use(args.conf_use), stderr)
        if args.conf_docker is not None:
            return _run(load_docker(args.conf_docker), stderr)
    except ConfigError as err:
        stderr.write(f"ERROR: {err}\n")
        return EXIT_CONFIG

    # The original's help: its first line, then the description and every mode.
    stderr.write(f"{PROGRAM}, version {VERSION}\n")
    parser.print_help(stderr)
    stderr.write("\nERROR: give one of --conf-gen DIR, --conf-use FILE or --conf-docker FILE\n")
    return EXIT_USAGE
