"""The backend decision: the rows of `backends.catalog.BACKENDS` in order (CUDA → ROCm → Vulkan →
CPU), with the reason each higher tier was skipped.

A GPU tier is chosen only when (1) its hardware is visible (the row's probe), (2) the engine
folder carries the row's library, (3) the driver meets the row's floor, and (4)
`llama-server --list-devices`, run with exactly the environment a child would get, lists a device
of that kind. Step 4 catches what static checks cannot: a driver/runtime mismatch, a missing
bundled library, a container started without the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mentator.backends import catalog
from mentator.backends.catalog import BackendSpec
from mentator.backends.choice import BackendChoice, GpuDevice
from mentator.hardware.probes import (
    EngineDevices,
    ProbeEnv,
    driver_major,
    list_engine_devices,
    probe_amd,
    probe_nvidia,
    render_nodes,
)


def _names(devices: list[GpuDevice]) -> str:
    return ", ".join(device.name for device in devices)


def _confirm(env: ProbeEnv, spec: BackendSpec) -> tuple[EngineDevices, str | None]:
    """Ask the engine itself which devices it sees with this backend's environment."""
    listing = list_engine_devices(env, spec.name)
    if listing.problem:
        detail = f": {listing.output_tail}" if listing.output_tail else ""
        return listing, f"{spec.title} backend failed to load ({listing.problem}){detail}"
    if not _engine_devices(listing, spec):
        detail = listing.output_tail or "no log output"
        return listing, (
            f"{spec.title} backend failed to load: llama-server --list-devices shows no "
            f"{spec.title} device ({detail})"
        )
    return listing, None


def _engine_devices(listing: EngineDevices, spec: BackendSpec) -> list[GpuDevice]:
    prefix = spec.device_prefix or ""
    return [device.as_gpu() for device in listing.devices if device.id.startswith(prefix)]


def _missing_library(env: ProbeEnv, spec: BackendSpec, found: str) -> str:
    library = env.layout.backend_library(spec.name)
    return (
        f"{found} found, but the engine has no {spec.title} backend ({library} is "
        "missing; this engine folder or image flavour was built without it)"
    )


def _chosen(
    env: ProbeEnv, spec: BackendSpec, reason: str, devices: list[GpuDevice], listing: EngineDevices
) -> BackendChoice:
    return BackendChoice(
        backend=spec.name,
        reason=reason,
        devices=devices,
        cpu_variant=listing.cpu_variant,
        env=env.layout.child_env(spec.name, env.environ),
    )


def _try_nvidia(env: ProbeEnv, spec: BackendSpec) -> BackendChoice | str:
    probe = probe_nvidia(env)
    if probe.problem:
        return probe.problem
    found = f"NVIDIA GPU ({_names(probe.devices)})"
    if not env.layout.has_backend(spec.name):
        return _missing_library(env, spec, found)
    cuda_major = env.layout.cuda_major(spec)
    needed = replace(spec, cuda_major=cuda_major).driver_floor
    have = driver_major(probe.driver_version)
    if needed is not None and have is not None and have < needed:
        return (
            f"NVIDIA driver {probe.driver_version} is too old for the bundled CUDA {cuda_major} "
            f"runtime (needs driver {needed} or newer); update the host's NVIDIA driver"
        )
    listing, problem = _confirm(env, spec)
    if problem:
        return problem
    runtime = f", CUDA {cuda_major} runtime" if cuda_major is not None else ""
    reason = f"{found}, driver {probe.driver_version}{runtime}"
    return _chosen(env, spec, reason, probe.devices, listing)


def _try_amd(env: ProbeEnv, spec: BackendSpec) -> BackendChoice | str:
    probe = probe_amd(env)
    if probe.problem:
        return probe.problem
    detected = ", ".join(probe.detected_gfx)
    override = f" (HSA_OVERRIDE_GFX_VERSION → {probe.override})" if probe.override else ""
    found = f"AMD GPU ({detected}){override}"
    if not env.layout.has_backend(spec.name):
        return _missing_library(env, spec, found)
    supported = env.layout.supported_gfx(spec)
    if supported is not None and not any(gfx in supported for gfx in probe.gfx_targets):
        return (
            f"{found} is not supported by the bundled {spec.title} kernels (built for "
            f"{', '.join(sorted(supported))}); set HSA_OVERRIDE_GFX_VERSION to the closest "
            "supported target (for example 10.3.0 for RDNA2, 11.0.0 for RDNA3)"
        )
    listing, problem = _confirm(env, spec)
    if problem:
        return problem
    return _chosen(env, spec, found, _engine_devices(listing, spec), listing)


def _try_render_node(env: ProbeEnv, spec: BackendSpec) -> BackendChoice | str:
    nodes = render_nodes(env)
    if not nodes:
        return f"no GPU render node ({env.dev_root / 'dri' / 'renderD*'}); pass --device /dev/dri"
    found = f"render node {nodes[0]}"
    if not env.layout.has_backend(spec.name):
        return _missing_library(env, spec, found)
    listing, problem = _confirm(env, spec)
    if problem:
        return problem
    devices = _engine_devices(listing, spec)
    reason = f"{spec.title} device ({_names(devices)})"
    return _chosen(env, spec, reason, devices, listing)


# How each kind of catalog row is tried (the row's `probe`).
_ATTEMPTS: dict[str, Callable[[ProbeEnv, BackendSpec], BackendChoice | str]] = {
    "nvidia": _try_nvidia,
    "amd": _try_amd,
    "render-node": _try_render_node,
}


def select_backend(env: ProbeEnv) -> BackendChoice:
    """Try the catalog's GPU rows in order; the first usable one wins (the lower usable ones
    are kept as its fallbacks), the CPU always works."""
    skipped: dict[str, str] = {}
    chosen: BackendChoice | None = None
    fallbacks: list[BackendChoice] = []
    for spec in catalog.BACKENDS:
        attempt = _ATTEMPTS.get(spec.probe)
        if attempt is None:
            continue
        outcome = attempt(env, spec)
        if chosen is None:
            if isinstance(outcome, BackendChoice):
                chosen = replace(outcome, skipped=skipped)
            else:
                skipped[spec.name] = outcome
        elif isinstance(outcome, BackendChoice):
            fallbacks.append(outcome)
    if chosen is not None:
        return replace(chosen, fallbacks=fallbacks)
    listing = list_engine_devices(env, catalog.CPU.name)
    reason = "no usable GPU"
    if listing.problem:
        reason += f"; engine check: {listing.problem}"
    return BackendChoice(
        backend=catalog.CPU.name, reason=reason, skipped=skipped, cpu_variant=listing.cpu_variant
    )
