"""Live VRAM use for /state (``gpuInfo.usedVramMb``): the backend decision measured it once at
start; a model loaded later changes it, so /state asks again (cached for a moment: dashboards
poll /state every second or so, and nvidia-smi takes tens of milliseconds).

How is decided by the backend's catalog row (its ``probe``, `catalog.Probe`), never by its name,
so a new row (a second CUDA major, another HIP build) is measured with no change here:
* ``nvidia``: ``nvidia-smi --query-gpu=memory.used`` (the first GPU, like ``gpuInfo.device``);
* ``amd``: the amdgpu driver's ``/sys/class/drm/card*/device/mem_info_vram_used`` (bytes);
* ``render-node`` (Vulkan, any vendor): whichever of the two answers; ``none`` (CPU): None.
None when nothing answers (the caller keeps the value measured at start).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import assert_never

from mentator.backends import catalog

CACHE_S = 2.0
_TOOL_TIMEOUT_S = 3.0


def _nvidia_used_mb(nvidia_smi: str) -> int | None:
    try:
        run = subprocess.run(
            [nvidia_smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        return None
    try:
        return int(float(lines[0].strip()))
    except ValueError:
        return None


def _amd_used_mb(sys_root: Path) -> int | None:
    for path in sorted((sys_root / "class" / "drm").glob("card*/device/mem_info_vram_used")):
        try:
            return int(path.read_text().strip()) // (1024 * 1024)
        except (OSError, ValueError):
            continue
    return None


def used_vram_mb(
    backend: str, environ: Mapping[str, str] | None = None, sys_root: Path = Path("/sys")
) -> int | None:
    """VRAM in use now on the first GPU of ``backend`` (uncached; see `VramMeter`); None for an
    unknown name."""
    env = os.environ if environ is None else environ
    nvidia_smi = env.get("MENTATOR_NVIDIA_SMI") or "nvidia-smi"
    try:
        probe = catalog.backend(backend).probe
    except KeyError:
        return None
    # Exhaustive over `catalog.Probe`: a new probe kind fails the type check until it is here.
    match probe:
        case "nvidia":
            return _nvidia_used_mb(nvidia_smi)
        case "amd":
            return _amd_used_mb(sys_root)
        case "render-node":
            amd = _amd_used_mb(sys_root)
            return amd if amd is not None else _nvidia_used_mb(nvidia_smi)
        case "none":
            return None
        case _:
            assert_never(probe)


class VramMeter:
    """`used_vram_mb` with a short cache per backend (thread-safe: /state runs in threads)."""

    def __init__(
        self,
        measure: Callable[[str], int | None] = used_vram_mb,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._measure = measure
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int | None]] = {}

    def used_mb(self, backend: str) -> int | None:
        with self._lock:
            now = self._clock()
            cached = self._last.get(backend)
            if cached is not None and now - cached[0] < self._cache_s:
                return cached[1]
            value = self._measure(backend)
            self._last[backend] = (now, value)
            return value
