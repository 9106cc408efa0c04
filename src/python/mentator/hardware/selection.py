"""The backend decision: CUDA → ROCm → Vulkan → CPU, with the reason each higher tier was skipped.

A GPU tier is chosen only when (1) the hardware is visible, (2) the engine folder carries that
backend's library, and (3) `llama-server --list-devices`, run with exactly the environment a
child would get, lists a device of that kind. Step 3 catches what static checks cannot: a
driver/runtime mismatch, a missing bundled library, a container started without the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mentator.engine.layout import CUDA_MIN_DRIVER_MAJOR, Backend
from mentator.hardware.probes import (
    DEVICE_PREFIX,
    EngineDevices,
    GpuDevice,
    ProbeEnv,
    driver_major,
    list_engine_devices,
    probe_amd,
    probe_nvidia,
    render_nodes,
)

_BACKEND_TITLE: dict[Backend, str] = {
    "cuda": "CUDA",
    "rocm": "ROCm",
    "vulkan": "Vulkan",
    "cpu": "CPU",
}


@dataclass(frozen=True)
class BackendChoice:
    """What the engine children run on, and why."""

    backend: Backend
    reason: str
    # tier → why it was not used, for every tier above the chosen one (and a GPU tier that
    # failed at model load time and fell back to the CPU).
    skipped: dict[str, str] = field(default_factory=dict)
    devices: list[GpuDevice] = field(default_factory=list)
    cpu_variant: str | None = None
    # Extra environment of every child: GGML_BACKEND_PATH, LD_LIBRARY_PATH (empty for the CPU).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.backend != "cpu"

    def to_json(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "reason": self.reason,
            "skipped": dict(self.skipped),
            "devices": [device.to_json() for device in self.devices],
            "cpuVariant": self.cpu_variant,
            "env": dict(self.env),
        }

    def gpu_info(self) -> dict[str, object]:
        """The /state `gpuInfo` object (VRAM fields are null on the CPU)."""
        first = self.devices[0] if self.devices else None
        return {
            "type": self.backend,
            "device": first.name if first else None,
            "totalVramMb": first.total_mb if first else None,
            "usedVramMb": first.used_mb if first else None,
        }

    def fallback_to_cpu(self, why: str) -> BackendChoice:
        """The CPU choice after this GPU backend failed at run time; the reason is kept."""
        return replace(
            self,
            backend="cpu",
            reason=f"fell back to CPU: {why}",
            skipped={**self.skipped, self.backend: why},
            devices=[],
            env={},
        )


def _names(devices: list[GpuDevice]) -> str:
    return ", ".join(device.name for device in devices)


def _confirm(env: ProbeEnv, backend: Backend) -> tuple[EngineDevices, str | None]:
    """Ask the engine itself which devices it sees with this backend's environment."""
    title = _BACKEND_TITLE[backend]
    listing = list_engine_devices(env, backend)
    if listing.problem:
        detail = f": {listing.output_tail}" if listing.output_tail else ""
        return listing, f"{title} backend failed to load ({listing.problem}){detail}"
    prefix = DEVICE_PREFIX[backend]
    if not any(device.id.startswith(prefix) for device in listing.devices):
        detail = listing.output_tail or "no log output"
        return listing, (
            f"{title} backend failed to load: llama-server --list-devices shows no {title} "
            f"device ({detail})"
        )
    return listing, None


def _engine_devices(listing: EngineDevices, backend: Backend) -> list[GpuDevice]:
    prefix = DEVICE_PREFIX[backend]
    return [device.as_gpu() for device in listing.devices if device.id.startswith(prefix)]


def _missing_library(env: ProbeEnv, backend: Backend, found: str) -> str:
    library = env.layout.backend_library(backend)
    return (
        f"{found} found, but the engine has no {_BACKEND_TITLE[backend]} backend ({library} is "
        "missing; this engine folder or image flavour was built without it)"
    )


def _try_cuda(env: ProbeEnv) -> BackendChoice | str:
    probe = probe_nvidia(env)
    if probe.problem:
        return probe.problem
    found = f"NVIDIA GPU ({_names(probe.devices)})"
    if not env.layout.has_backend("cuda"):
        return _missing_library(env, "cuda", found)
    cuda_major = env.layout.bundled_cuda_major()
    needed = CUDA_MIN_DRIVER_MAJOR.get(cuda_major) if cuda_major is not None else None
    have = driver_major(probe.driver_version)
    if needed is not None and have is not None and have < needed:
        return (
            f"NVIDIA driver {probe.driver_version} is too old for the bundled CUDA {cuda_major} "
            f"runtime (needs driver {needed} or newer); update the host's NVIDIA driver"
        )
    listing, problem = _confirm(env, "cuda")
    if problem:
        return problem
    runtime = f", CUDA {cuda_major} runtime" if cuda_major is not None else ""
    return BackendChoice(
        backend="cuda",
        reason=f"{found}, driver {probe.driver_version}{runtime}",
        devices=probe.devices,
        cpu_variant=listing.cpu_variant,
        env=env.layout.child_env("cuda", env.environ),
    )


def _try_rocm(env: ProbeEnv) -> BackendChoice | str:
    probe = probe_amd(env)
    if probe.problem:
        return probe.problem
    detected = ", ".join(probe.detected_gfx)
    override = f" (HSA_OVERRIDE_GFX_VERSION → {probe.override})" if probe.override else ""
    found = f"AMD GPU ({detected}){override}"
    if not env.layout.has_backend("rocm"):
        return _missing_library(env, "rocm", found)
    supported = env.layout.rocm_supported_gfx()
    if supported is not None and not any(gfx in supported for gfx in probe.gfx_targets):
        return (
            f"{found} is not supported by the bundled ROCm kernels (built for "
            f"{', '.join(sorted(supported))}); set HSA_OVERRIDE_GFX_VERSION to the closest "
            "supported target (for example 10.3.0 for RDNA2, 11.0.0 for RDNA3)"
        )
    listing, problem = _confirm(env, "rocm")
    if problem:
        return problem
    return BackendChoice(
        backend="rocm",
        reason=found,
        devices=_engine_devices(listing, "rocm"),
        cpu_variant=listing.cpu_variant,
        env=env.layout.child_env("rocm", env.environ),
    )


def _try_vulkan(env: ProbeEnv) -> BackendChoice | str:
    nodes = render_nodes(env)
    if not nodes:
        return f"no GPU render node ({env.dev_root / 'dri' / 'renderD*'}); pass --device /dev/dri"
    found = f"render node {nodes[0]}"
    if not env.layout.has_backend("vulkan"):
        return _missing_library(env, "vulkan", found)
    listing, problem = _confirm(env, "vulkan")
    if problem:
        return problem
    devices = _engine_devices(listing, "vulkan")
    return BackendChoice(
        backend="vulkan",
        reason=f"Vulkan device ({_names(devices)})",
        devices=devices,
        cpu_variant=listing.cpu_variant,
        env=env.layout.child_env("vulkan", env.environ),
    )


_GPU_TIERS = (("cuda", _try_cuda), ("rocm", _try_rocm), ("vulkan", _try_vulkan))


def select_backend(env: ProbeEnv) -> BackendChoice:
    """Probe the tiers in priority order; the first usable one wins, the CPU always works."""
    skipped: dict[str, str] = {}
    for tier, attempt in _GPU_TIERS:
        outcome = attempt(env)
        if isinstance(outcome, BackendChoice):
            return replace(outcome, skipped=skipped)
        skipped[tier] = outcome
    listing = list_engine_devices(env, "cpu")
    reason = "no usable GPU"
    if listing.problem:
        reason += f"; engine check: {listing.problem}"
    return BackendChoice(
        backend="cpu", reason=reason, skipped=skipped, cpu_variant=listing.cpu_variant
    )
