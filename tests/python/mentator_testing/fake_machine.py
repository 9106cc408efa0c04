"""A fake machine for the hardware probes and the backend catalog: /dev and /sys trees, tools
and an engine folder in tmp_path. Tools are small shell scripts, run by the real probe code in
child processes."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mentator.hardware.probes import ProbeEnv


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# The device line each backend prints under --list-devices (llama.cpp's format).
_DEVICE_LINES = {
    "cuda": "  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23000 MiB free)",
    "rocm": "  ROCm0: AMD Radeon RX 7900 XTX (24560 MiB, 24000 MiB free)",
    "vulkan": "  Vulkan0: Intel(R) Arc(tm) A770 Graphics (16288 MiB, 16000 MiB free)",
}


@dataclass
class FakeMachine:
    root: Path
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def engine(self) -> Path:
        return self.root / "engine"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, timeout_s: float = 10.0) -> ProbeEnv:
        self.dev.mkdir(parents=True, exist_ok=True)
        self.sys.mkdir(parents=True, exist_ok=True)
        return ProbeEnv(
            engine_dir=self.engine,
            dev_root=self.dev,
            sys_root=self.sys,
            nvidia_smi=str(self.bin / "nvidia-smi"),
            rocminfo=str(self.bin / "rocminfo"),
            timeout_s=timeout_s,
            environ={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.environ},
        )

    # --- engine folder ----------------------------------------------------------------------

    def engine_with(self, *backends: str, cudart_major: int | None = 12) -> None:
        """An engine folder with these GPU backend libraries (empty files; never dlopen'ed)."""
        self.engine.mkdir(parents=True, exist_ok=True)
        (self.engine / "libggml-cpu-haswell.so").write_bytes(b"")
        library = {
            "cuda": "libggml-cuda.so",
            "rocm": "libggml-hip.so",
            "vulkan": "libggml-vulkan.so",
        }
        for backend in backends:
            folder = self.engine / backend
            folder.mkdir(exist_ok=True)
            (folder / library[backend]).write_bytes(b"")
            if backend == "cuda" and cudart_major is not None:
                (folder / f"libcudart.so.{cudart_major}").write_bytes(b"")

    def llama_server(self, *, loads: tuple[str, ...] = ("cuda", "rocm", "vulkan")) -> None:
        """A fake llama-server: --list-devices lists a device for each backend in `loads` that
        GGML_BACKEND_PATH points at; any other backend "fails to load" like ggml reports it."""
        cases = []
        for backend, line in _DEVICE_LINES.items():
            if backend in loads:
                cases.append(f'  */{backend}/*) echo "{line}" ;;')
            else:
                cases.append(
                    f'  */{backend}/*) echo "load_backend: failed to load $GGML_BACKEND_PATH: '
                    f'lib{backend}-runtime.so: cannot open shared object file" >&2 ;;'
                )
        body = (
            'cpu="$(dirname "$0")/libggml-cpu-haswell.so"\n'
            '[ "$1" = "-v" ] && echo "load_backend: loaded CPU backend from $cpu" >&2\n'
            'echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2\n'
            'echo "Available devices:"\n'
            'case "$GGML_BACKEND_PATH" in\n'
            + "\n".join(cases)
            + '\n  "") echo "  (none)" ;;\nesac\n'
        )
        write_script(self.engine / "llama-server", body)

    # --- tools and device trees -------------------------------------------------------------

    def nvidia_smi(self, body: str) -> None:
        write_script(self.bin / "nvidia-smi", body)

    def rocminfo(self, body: str) -> None:
        write_script(self.bin / "rocminfo", body)

    def nvidia_gpu(self, driver: str = "570.86.15") -> None:
        self.nvidia_smi(f'echo "NVIDIA GeForce RTX 4090, 24564, 1200, {driver}"\n')

    def amd_gpu(self, target_version: int | None) -> None:
        """/dev/kfd plus KFD topology: node 0 a CPU (version 0), node 1 the GPU."""
        self.dev.mkdir(parents=True, exist_ok=True)
        (self.dev / "kfd").write_bytes(b"")
        nodes = self.sys / "class" / "kfd" / "kfd" / "topology" / "nodes"
        (nodes / "0").mkdir(parents=True, exist_ok=True)
        (nodes / "0" / "properties").write_text("cpu_cores_count 16\ngfx_target_version 0\n")
        if target_version is not None:
            (nodes / "1").mkdir(parents=True, exist_ok=True)
            (nodes / "1" / "properties").write_text(
                f"cpu_cores_count 0\nsimd_count 192\ngfx_target_version {target_version}\n"
            )

    def render_node(self) -> None:
        (self.dev / "dri").mkdir(parents=True, exist_ok=True)
        (self.dev / "dri" / "renderD128").write_bytes(b"")
