"""The one table of engine backends: what each is, where it lives and what it needs.

Every other place that needs a fact about "a backend" reads it from `BACKENDS`: the detection
order and its probes (`hardware/`), the child's environment (`layout.py`), the device names
llama-server prints (`--list-devices`), the driver floor, the titles in logs and `/state`, and
the engine folder layout the Dockerfile builds. Adding a backend is one row here plus the
Dockerfile stage that puts its library at `library`.

Rows are in priority order: the first usable one wins, the CPU (the last row) always works.
Nothing here imports from the rest of the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Which hardware probe decides whether a row's GPU is present (hardware/probes.py), and how its
# VRAM use is measured (hardware/vram.py).
Probe = Literal["nvidia", "amd", "render-node", "none"]

# The variable the original image exported (as 1) for a GPU family: informational, set by
# docker-entrypoint.sh. Keyed by the probe, so a new row of a family gets it with no other change.
ORIGINAL_ENV_FLAG: dict[Probe, str] = {"nvidia": "LLAMA_CUDA", "amd": "LLAMA_HIPBLAS"}

# NVIDIA's minor-version compatibility: the oldest Linux driver (major version) that runs every
# CUDA runtime of a major version (11.x, 12.x, 13.x).
CUDA_DRIVER_FLOOR: dict[int, int] = {11: 450, 12: 525, 13: 580}


@dataclass(frozen=True)
class BackendSpec:
    """One backend of the engine.

    ``library`` is the backend's ggml library, relative to the engine folder; None for the CPU,
    whose variants (``libggml-cpu-<isa>.so``) ggml finds next to llama-server by itself.
    ``device_prefix`` is how llama-server names this backend's devices (``CUDA0``, ``ROCm0``).
    ``cuda_major`` is the CUDA runtime the library was built against (it sets the driver floor,
    `CUDA_DRIVER_FLOOR`); ``supported_gfx_file`` lists the AMD gfx targets its kernels were built
    for, relative to the engine folder.
    """

    name: str
    title: str
    probe: Probe
    library: str | None
    device_prefix: str | None
    cuda_major: int | None = None
    supported_gfx_file: str | None = None

    @property
    def is_gpu(self) -> bool:
        return self.library is not None

    @property
    def driver_floor(self) -> int | None:
        """The oldest NVIDIA driver major version this backend's CUDA runtime runs on."""
        return CUDA_DRIVER_FLOOR.get(self.cuda_major) if self.cuda_major is not None else None

    @property
    def original_env_flag(self) -> str | None:
        """`ORIGINAL_ENV_FLAG` of this row's GPU family (None: the original set none)."""
        return ORIGINAL_ENV_FLAG.get(self.probe)


BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec(
        name="cuda",
        title="CUDA",
        probe="nvidia",
        library="cuda/libggml-cuda.so",
        device_prefix="CUDA",
        cuda_major=12,
    ),
    BackendSpec(
        name="rocm",
        title="ROCm",
        probe="amd",
        library="rocm/libggml-hip.so",
        device_prefix="ROCm",
        supported_gfx_file="rocm/supported-gfx.txt",
    ),
    BackendSpec(
        name="vulkan",
        title="Vulkan",
        probe="render-node",
        library="vulkan/libggml-vulkan.so",
        device_prefix="Vulkan",
    ),
    BackendSpec(
        name="cpu",
        title="CPU",
        probe="none",
        library=None,
        device_prefix=None,
    ),
)

BY_NAME: dict[str, BackendSpec] = {spec.name: spec for spec in BACKENDS}
GPU_BACKENDS: tuple[BackendSpec, ...] = tuple(spec for spec in BACKENDS if spec.is_gpu)
CPU: BackendSpec = BY_NAME["cpu"]


def backend(name: str) -> BackendSpec:
    """The row named ``name``; `KeyError` names the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(BY_NAME)}") from None
