"""The engine folder: where llama-server and each backend's library live, the environment of a
child on a backend, and the one rule that says which folder is the engine.

The engine is llama.cpp's `llama-server` with dynamic backends (`GGML_BACKEND_DL`):

    <engine>/llama-server  (+ libllama, libggml*, libggml-cpu-<isa>.so variants: the CPU)
    <engine>/<row.library> for every GPU row of `catalog.BACKENDS` (cuda/, rocm/, vulkan/)

ggml loads every `libggml-<name>-*.so` it finds in the executable's folder and in the current
working directory, then ONE extra backend named by `GGML_BACKEND_PATH`. The GPU backends
therefore sit in sub-folders, where the automatic search never sees them, and a child is pointed
at exactly one of them through `GGML_BACKEND_PATH`; libraries bundled beside it are found
through `LD_LIBRARY_PATH`. A CPU child gets neither, so a stray GPU library is never picked up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mentator.backends import catalog
from mentator.backends.catalog import BackendSpec

SERVER_BINARY = "llama-server"
ENGINE_DIR_ENV = "MENTATOR_ENGINE_DIR"
HOW_TO_GET_ENGINE = (
    "build it with build-support/engine-export.sh (it exports the engine of the Docker build "
    "into a folder), then point MENTATOR_ENGINE_DIR or the config key engineDir at that folder"
)

_CUDART_NAME = re.compile(r"^libcudart\.so\.(\d+)(?:\.|$)")

# Variables that would silently change a child's behaviour behind our back.
_STRIPPED_PREFIXES = ("LLAMA_ARG_",)
_STRIPPED_NAMES = frozenset({"GGML_BACKEND_PATH", "LLAMA_API_KEY"})


class EngineFolderError(RuntimeError):
    """The engine folder or its llama-server is missing; the message says how to get one."""


def resolve_engine_dir(
    configured: str | os.PathLike[str] | None, environ: Mapping[str, str], cwd: Path | None = None
) -> Path | None:
    """THE engine-folder rule: ``MENTATOR_ENGINE_DIR`` when set, else the configured folder
    (config key ``engineDir``; a relative path starts at ``cwd``), else None (not configured).

    The Docker image sets the variable, so there the file never decides.
    """
    from_env = environ.get(ENGINE_DIR_ENV, "").strip()
    if from_env:
        return _absolute(Path(from_env).expanduser())
    if configured:
        path = Path(configured).expanduser()
        return _absolute(path if path.is_absolute() or cwd is None else cwd / path)
    return None


def _absolute(path: Path) -> Path:
    # Normalised, symlinks kept: messages show the path the user gave.
    return Path(os.path.normpath(path.absolute()))


def child_environment(base: Mapping[str, str], backend_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of an engine child: the parent's, minus what could steer llama-server
    (GGML_BACKEND_PATH, LLAMA_ARG_*), plus what the chosen backend needs."""
    env = {
        key: value
        for key, value in base.items()
        if key not in _STRIPPED_NAMES and not key.startswith(_STRIPPED_PREFIXES)
    }
    env.update(backend_env)
    return env


@dataclass(frozen=True)
class EngineLayout:
    """The paths of one engine folder. Creating it touches no file; `require_server` checks."""

    root: Path

    @property
    def server_binary(self) -> Path:
        return self.root / SERVER_BINARY

    def backend_library(self, backend: str) -> Path | None:
        """The GPU backend's shared library, or None for the CPU (built into the root)."""
        relative = catalog.backend(backend).library
        return None if relative is None else self.root / relative

    def backend_dir(self, backend: str) -> Path:
        library = self.backend_library(backend)
        return self.root if library is None else library.parent

    def has_backend(self, backend: str) -> bool:
        library = self.backend_library(backend)
        return library is None or library.is_file()

    def supported_gfx(self, spec: BackendSpec) -> frozenset[str] | None:
        """The AMD gfx targets ``spec``'s kernels were built for, or None when not recorded."""
        if spec.supported_gfx_file is None:
            return None
        try:
            text = (self.root / spec.supported_gfx_file).read_text(encoding="utf-8")
        except OSError:
            return None
        targets = {word.strip().lower() for word in re.split(r"[\s,;]+", text) if word.strip()}
        return frozenset(t for t in targets if not t.startswith("#"))

    def cuda_major(self, spec: BackendSpec) -> int | None:
        """The CUDA runtime major version of ``spec``: a ``libcudart.so.<major>`` bundled next to
        its library wins (a folder built with another toolkit), else the catalog's."""
        try:
            names = [entry.name for entry in self.backend_dir(spec.name).iterdir()]
        except OSError:
            names = []
        majors = [int(m.group(1)) for name in names if (m := _CUDART_NAME.match(name))]
        return max(majors) if majors else spec.cuda_major

    def child_env(self, backend: str, base: Mapping[str, str]) -> dict[str, str]:
        """The extra variables a child running on `backend` needs (empty for the CPU).

        `base` is the environment the child will inherit; an existing LD_LIBRARY_PATH is kept
        after the bundled folders so system libraries (the NVIDIA driver's libcuda) still resolve.
        """
        library = self.backend_library(backend)
        if library is None:
            return {}
        search = [str(library.parent), str(self.root)]
        inherited = base.get("LD_LIBRARY_PATH", "")
        if inherited:
            search.append(inherited)
        return {"GGML_BACKEND_PATH": str(library), "LD_LIBRARY_PATH": os.pathsep.join(search)}

    def require_server(self) -> Path:
        """The llama-server path; `EngineFolderError` naming the folder when it is missing."""
        if not self.root.is_dir():
            raise EngineFolderError(
                f"engine folder {self.root} does not exist; {HOW_TO_GET_ENGINE}"
            )
        binary = self.server_binary
        if not binary.is_file():
            raise EngineFolderError(
                f"engine folder {self.root} has no {SERVER_BINARY}; {HOW_TO_GET_ENGINE}"
            )
        if not os.access(binary, os.X_OK):
            raise EngineFolderError(f"{binary} is not executable (chmod +x it)")
        return binary


NOT_CONFIGURED = (
    f"no engine folder configured: set {ENGINE_DIR_ENV} or the config key engineDir; "
    + HOW_TO_GET_ENGINE
)
