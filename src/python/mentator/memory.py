"""Memory of the service and its engine child, for the /state fields and the heartbeat line."""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass


def _status_kb(field_name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (Linux), e.g. VmRSS; None when unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _children_rss_kb() -> int:
    """RSS of this process's direct children (the llama-server engine), summed."""
    total = 0
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children", encoding="ascii") as handle:
            children = handle.read().split()
    except OSError:
        return 0
    for child in children:
        total += _status_kb("VmRSS", child) or 0
    return total


@dataclass(frozen=True)
class MemoryUsage:
    """The /state memory fields, in MB (ceil), mapped onto a Python service + engine child.

    ``rss``: this process's resident memory (the original: Node's RSS); ``heap``: its anonymous
    memory, i.e. Python objects (the original: the JS heap); ``external``: the engine child's
    resident memory, where the model lives (the original: memory outside the JS heap, which held
    the model).
    """

    rss_mb: int
    heap_mb: int
    external_mb: int


def memory_usage() -> MemoryUsage:
    rss_kb = _status_kb("VmRSS")
    if rss_kb is None:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    heap_kb = _status_kb("RssAnon") or rss_kb
    return MemoryUsage(
        rss_mb=math.ceil(rss_kb / 1024),
        heap_mb=math.ceil(heap_kb / 1024),
        external_mb=math.ceil(_children_rss_kb() / 1024),
    )


def available_memory_mb() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in MB (what a new engine child could still use)."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
