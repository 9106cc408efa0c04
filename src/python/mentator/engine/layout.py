"""Where things live inside the engine folder, and the environment a child needs per backend.

The engine is llama.cpp's `llama-server` built with dynamic backends (`GGML_BACKEND_DL=ON`):

    <engine>/llama-server, libllama.so, libggml*.so, libggml-cpu-<isa>.so   (CPU, always loaded)
    <engine>/cuda/libggml-cuda.so   + bundled libcudart / libcublas
    <engine>/rocm/libggml-hip.so    + bundled ROCm libraries, optional supported-gfx.txt
    <engine>/vulkan/libggml-vulkan.so

ggml loads every `libggml-<name>-*.so` it finds in the executable's folder and in the current
working directory (ggml-backend-reg.cpp, `ggml_backend_load_best`), then ONE extra backend named
by the environment variable `GGML_BACKEND_PATH` (a path to a .so). The GPU backends therefore sit
in sub-folders, where the automatic search never sees them, and a child is pointed at exactly one
of them through `GGML_BACKEND_PATH`; its bundled runtime libraries are found through
`LD_LIBRARY_PATH`. A CPU child gets neither, so a stray GPU library can never be picked up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mentator.engine.errors import EngineNotFoundError

Backend = Literal["cuda", "rocm", "vulkan", "cpu"]
GPU_BACKENDS: tuple[Backend, ...] = ("cuda", "rocm", "vulkan")

SERVER_BINARY = "llama-server"
ENGINE_DIR_ENV = "MENTATOR_ENGINE_DIR"
HOW_TO_GET_ENGINE = (
    "build it with build-support/engine-export.sh (it exports the engine of the Docker build "
    "into a folder), then point MENTATOR_ENGINE_DIR or the config key engineDir at that folder"
)

# The backend library inside each GPU sub-folder (the file ggml's registry loads).
_BACKEND_LIBRARY: dict[Backend, str] = {
    "cuda": "cuda/libggml-cuda.so",
    "rocm": "rocm/libggml-hip.so",
    "vulkan": "vulkan/libggml-vulkan.so",
}

# Oldest Linux driver that runs each CUDA runtime major version (NVIDIA's "minor version
# compatibility" table: any driver of at least this version runs every 12.x / 13.x runtime).
CUDA_MIN_DRIVER_MAJOR: dict[int, int] = {11: 450, 12: 525, 13: 580}

_CUDART_NAME = re.compile(r"^libcudart\.so\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class EngineLayout:
    """The paths of one engine folder. Creating it touches no file; `require_server` checks."""

    root: Path

    @property
    def server_binary(self) -> Path:
        return self.root / SERVER_BINARY

    def backend_library(self, backend: Backend) -> Path | None:
        """The GPU backend's shared library, or None for the CPU (built into the root)."""
        relative = _BACKEND_LIBRARY.get(backend)
        return None if relative is None else self.root / relative

    def backend_dir(self, backend: Backend) -> Path:
        library = self.backend_library(backend)
        return self.root if library is None else library.parent

    def has_backend(self, backend: Backend) -> bool:
        library = self.backend_library(backend)
        return library is None or library.is_file()

    @property
    def rocm_supported_gfx_file(self) -> Path:
        return self.root / "rocm" / "supported-gfx.txt"

    def rocm_supported_gfx(self) -> frozenset[str] | None:
        """The gfx targets the bundled ROCm kernels were built for, or None when not recorded."""
        try:
            text = self.rocm_supported_gfx_file.read_text(encoding="utf-8")
        except OSError:
            return None
        targets = {word.strip().lower() for word in re.split(r"[\s,;]+", text) if word.strip()}
        return frozenset(t for t in targets if not t.startswith("#"))

    def bundled_cuda_major(self) -> int | None:
        """The CUDA runtime major version bundled in cuda/ (from libcudart.so.<major>)."""
        try:
            names = [entry.name for entry in self.backend_dir("cuda").iterdir()]
        except OSError:
            return None
        majors = [int(m.group(1)) for name in names if (m := _CUDART_NAME.match(name))]
        return max(majors) if majors else None

    def child_env(self, backend: Backend, base: Mapping[str, str]) -> dict[str, str]:
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
        """The llama-server path; `EngineNotFoundError` naming the folder when it is missing."""
        if not self.root.is_dir():
            raise EngineNotFoundError(
                f"engine folder {self.root} does not exist; {HOW_TO_GET_ENGINE}"
            )
        binary = self.server_binary
        if not binary.is_file():
            raise EngineNotFoundError(
                f"engine folder {self.root} has no {SERVER_BINARY}; {HOW_TO_GET_ENGINE}"
            )
        if not os.access(binary, os.X_OK):
            raise EngineNotFoundError(f"{binary} is not executable (chmod +x it)")
        return binary


def resolve_engine_dir(
    configured: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path:
    """The engine folder: the configured one, else MENTATOR_ENGINE_DIR; an error names both."""
    if configured:
        return Path(configured).expanduser()
    from_env = environ.get(ENGINE_DIR_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    raise EngineNotFoundError(
        f"no engine folder configured: set {ENGINE_DIR_ENV} or the config key engineDir; "
        + HOW_TO_GET_ENGINE
    )
