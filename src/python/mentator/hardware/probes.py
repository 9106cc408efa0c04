"""Hardware probes: each looks at one kind of accelerator and reports what it found, or why not.

Every probe reads files under roots (`/dev`, `/sys`) and runs tools (`nvidia-smi`, `rocminfo`,
`llama-server --list-devices`) named by a `ProbeEnv`, so tests point all of them at fakes. Tools
run in a child process with a timeout: a hung driver tool must not hang the service start.
Nothing here decides; `selection.py` turns the findings into a backend choice.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mentator.backends.choice import GpuDevice
from mentator.backends.layout import EngineLayout, child_environment, resolve_engine_dir

DEFAULT_TIMEOUT_S = 10.0
_TAIL_CHARS = 600


@dataclass(frozen=True)
class ProbeEnv:
    """Where the probes look. Defaults are the real system; every field can point at a fake."""

    engine_dir: Path
    dev_root: Path = Path("/dev")
    sys_root: Path = Path("/sys")
    nvidia_smi: str = "nvidia-smi"
    rocminfo: str = "rocminfo"
    timeout_s: float = DEFAULT_TIMEOUT_S
    # The environment the probes (and later the engine children) see: HSA_OVERRIDE_GFX_VERSION,
    # PATH for the tools, LD_LIBRARY_PATH kept for the children.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], engine_dir: Path | None = None) -> ProbeEnv:
        """Defaults overridden by MENTATOR_* variables (how the container tests inject fakes)."""

        def pick(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        # An explicit folder (the --engine-dir flag, the service's resolved one), else the rule.
        engine = engine_dir or resolve_engine_dir(None, environ) or Path()
        timeout_text = pick("MENTATOR_PROBE_TIMEOUT_S", str(DEFAULT_TIMEOUT_S))
        try:
            timeout_s = float(timeout_text)
        except ValueError:
            timeout_s = DEFAULT_TIMEOUT_S
        return cls(
            engine_dir=engine,
            dev_root=Path(pick("MENTATOR_DEV_ROOT", "/dev")),
            sys_root=Path(pick("MENTATOR_SYS_ROOT", "/sys")),
            nvidia_smi=pick("MENTATOR_NVIDIA_SMI", "nvidia-smi"),
            rocminfo=pick("MENTATOR_ROCMINFO", "rocminfo"),
            timeout_s=timeout_s,
            environ=dict(environ),
        )

    @property
    def layout(self) -> EngineLayout:
        return EngineLayout(self.engine_dir)


@dataclass(frozen=True)
class ToolRun:
    """The outcome of one tool run. `problem` is None only when it ran and exited 0."""

    returncode: int | None
    stdout: str
    stderr: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def tail(text: str, limit: int = _TAIL_CHARS) -> str:
    """The end of a tool's output, on one line, for a reason string."""
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def run_tool(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None
) -> ToolRun:
    """Run a tool in a child process; never raises, the problem is described instead."""
    name = Path(argv[0]).name
    try:
        completed = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=dict(env) if env is not None else None,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return ToolRun(None, "", "", f"{name} not found")
    except PermissionError:
        return ToolRun(None, "", "", f"{name} is not executable")
    except subprocess.TimeoutExpired:
        return ToolRun(None, "", "", f"{name} timed out after {timeout_s:g} s")
    except OSError as error:
        return ToolRun(None, "", "", f"{name} could not run: {error}")
    if completed.returncode != 0:
        detail = tail(completed.stderr) or tail(completed.stdout) or "no output"
        problem = f"{name} failed (exit code {completed.returncode}): {detail}"
        return ToolRun(completed.returncode, completed.stdout, completed.stderr, problem)
    return ToolRun(0, completed.stdout, completed.stderr, None)


# --- NVIDIA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NvidiaProbe:
    devices: list[GpuDevice]
    driver_version: str | None
    problem: str | None  # why no NVIDIA GPU is usable; None when devices were listed


def _to_int(text: str) -> int | None:
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


def probe_nvidia(env: ProbeEnv) -> NvidiaProbe:
    """Ask nvidia-smi for the GPUs, their memory and the driver version."""
    run = run_tool(
        [
            env.nvidia_smi,
            "--query-gpu=name,memory.total,memory.used,driver_version",
            "--format=csv,noheader,nounits",
        ],
        timeout_s=env.timeout_s,
        env=env.environ,
    )
    if not run.ok:
        hint = (
            " (no NVIDIA driver visible; start the container with --gpus=all)"
            if run.problem and run.problem.endswith("not found")
            else ""
        )
        return NvidiaProbe([], None, f"{run.problem}{hint}")
    devices: list[GpuDevice] = []
    driver: str | None = None
    for line in run.stdout.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < 4 or not cells[0]:
            continue
        devices.append(GpuDevice(cells[0], _to_int(cells[1]), _to_int(cells[2])))
        driver = driver or cells[3]
    if not devices:
        return NvidiaProbe(
            [], None, f"nvidia-smi lists no GPU (output: {tail(run.stdout) or 'empty'})"
        )
    return NvidiaProbe(devices, driver, None)


def driver_major(version: str | None) -> int | None:
    if not version:
        return None
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None


# --- AMD ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmdProbe:
    gfx_targets: list[str]  # effective targets (after HSA_OVERRIDE_GFX_VERSION), one per GPU
    detected_gfx: list[str]  # what the hardware reports
    override: str | None
    problem: str | None


def gfx_name_from_target_version(value: int) -> str | None:
    """KFD's gfx_target_version (major*10000 + minor*100 + stepping) as a gfx name.

    Minor and stepping are written as hex digits: 90010 → gfx90a, 100300 → gfx1030.
    """
    if value <= 0:
        return None
    major, rest = divmod(value, 10000)
    minor, stepping = divmod(rest, 100)
    if minor > 15 or stepping > 15:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def gfx_name_from_override(value: str) -> str | None:
    """HSA_OVERRIDE_GFX_VERSION "10.3.0" → gfx1030; "9.0.10" → gfx90a."""
    parts = value.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor, stepping = (int(p) for p in parts)
    if minor > 15 or stepping > 15:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def _gfx_from_sysfs(sys_root: Path) -> list[str]:
    nodes = sys_root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    found: list[str] = []
    try:
        node_dirs = sorted(nodes.iterdir(), key=lambda p: (len(p.name), p.name))
    except OSError:
        return found
    for node in node_dirs:
        try:
            properties = (node / "properties").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = re.search(r"^gfx_target_version\s+(\d+)\s*$", properties, re.MULTILINE)
        name = gfx_name_from_target_version(int(match.group(1))) if match else None
        if name:  # CPU nodes report 0
            found.append(name)
    return found


def _gfx_from_rocminfo(env: ProbeEnv) -> tuple[list[str], str | None]:
    run = run_tool([env.rocminfo], timeout_s=env.timeout_s, env=env.environ)
    if not run.ok:
        return [], run.problem
    names = re.findall(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", run.stdout, re.MULTILINE)
    return list(dict.fromkeys(names)), None


def probe_amd(env: ProbeEnv) -> AmdProbe:
    """/dev/kfd must exist (ROCm cannot run without it); gfx targets from sysfs, else rocminfo."""
    if not (env.dev_root / "kfd").exists():
        return AmdProbe(
            [],
            [],
            None,
            f"no {env.dev_root / 'kfd'} (no AMD GPU passed in; start the container with "
            "--device /dev/kfd --device /dev/dri)",
        )
    detected = _gfx_from_sysfs(env.sys_root)
    rocminfo_problem: str | None = None
    if not detected:
        detected, rocminfo_problem = _gfx_from_rocminfo(env)
    override_text = env.environ.get("HSA_OVERRIDE_GFX_VERSION", "").strip() or None
    override = gfx_name_from_override(override_text) if override_text else None
    if not detected:
        why = f"; rocminfo: {rocminfo_problem}" if rocminfo_problem else ""
        return AmdProbe(
            [],
            [],
            override,
            f"{env.dev_root / 'kfd'} exists but no AMD GPU gfx target was found{why}",
        )
    effective = [override] * len(detected) if override else list(detected)
    return AmdProbe(effective, detected, override, None)


# --- Vulkan -------------------------------------------------------------------------------------


def render_nodes(env: ProbeEnv) -> list[Path]:
    try:
        return sorted((env.dev_root / "dri").glob("renderD*"))
    except OSError:
        return []


# --- the engine's own view: llama-server --list-devices -----------------------------------------

# "  CUDA0: NVIDIA GeForce RTX 3090 (24135 MiB, 23884 MiB free)"
_DEVICE_LINE = re.compile(r"^\s+(\S+?):\s+(.*?)\s+\((\d+)\s+MiB,\s+(\d+)\s+MiB free\)\s*$")
# ggml's registry: "load_backend: loaded CPU backend from /engine/libggml-cpu-haswell.so"
_CPU_BACKEND_LINE = re.compile(r"loaded CPU backend from \S*?libggml-cpu-?([A-Za-z0-9_]*)\.so")


@dataclass(frozen=True)
class EngineDevice:
    id: str  # e.g. "CUDA0"
    description: str
    total_mb: int
    free_mb: int

    def as_gpu(self) -> GpuDevice:
        return GpuDevice(self.description, self.total_mb, max(self.total_mb - self.free_mb, 0))


@dataclass(frozen=True)
class EngineDevices:
    devices: list[EngineDevice]
    cpu_variant: str | None
    problem: str | None  # the run failed (missing binary, crash, timeout)
    output_tail: str


def parse_cpu_variant(log_text: str) -> str | None:
    """The CPU backend ggml chose ("haswell", "skylakex", ...; "cpu" for a plain libggml-cpu.so)."""
    match = _CPU_BACKEND_LINE.search(log_text)
    if not match:
        return None
    return match.group(1) or "cpu"


def parse_device_list(stdout: str) -> list[EngineDevice]:
    devices = []
    for line in stdout.splitlines():
        match = _DEVICE_LINE.match(line)
        if match:
            devices.append(
                EngineDevice(
                    match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
                )
            )
    return devices


def list_engine_devices(env: ProbeEnv, backend: str) -> EngineDevices:
    """Run `llama-server --list-devices` with the environment a child on `backend` would get."""
    layout = env.layout
    binary = layout.server_binary
    if not binary.is_file():
        return EngineDevices([], None, f"{binary} not found", "")
    child_env = child_environment(env.environ, layout.child_env(backend, env.environ))
    # -v first (arguments act in order and --list-devices exits): without it the release build
    # keeps ggml's "loaded CPU backend from ..." line to itself.
    run = run_tool([str(binary), "-v", "--list-devices"], timeout_s=env.timeout_s, env=child_env)
    output = f"{run.stderr}\n{run.stdout}"
    return EngineDevices(
        parse_device_list(run.stdout), parse_cpu_variant(output), run.problem, tail(run.stderr)
    )
