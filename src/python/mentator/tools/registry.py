"""The live lists of tools (``toolDir``) and tool environments (``toolEnvDir``), rescanned like
the models (at start, then ``interval_s`` after each scan), logged on ``MANAGER.TOOL`` /
``MANAGER.TOOLENV``: added/removed names, and each invalid file's problem.

Difference from the original: a file's problem is logged when it first appears (or changes),
not again every minute while the file stays as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from mentator.logging_protocol import LoggerProtocol
from mentator.models.discovery import ModelScanError
from mentator.tools.files import (
    ENV_SUFFIX,
    TOOL_SUFFIX,
    ToolEnv,
    ToolFile,
    find_named,
    scan_envs,
    scan_tools,
)

TOOL_PIPE = "MANAGER.TOOL"
ENV_PIPE = "MANAGER.TOOLENV"

Item = TypeVar("Item", ToolFile, ToolEnv)


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


class _Listing(Generic[Item]):
    """One folder's items, swapped in whole after each scan."""

    def __init__(
        self,
        folder: Path | None,
        scan: Callable[[Path], tuple[list[Item], list[str]]],
        suffix: str,
        pipe: str,
        what: str,
        logger: LoggerProtocol,
    ) -> None:
        self.folder = folder
        self._scan: Callable[[Path], tuple[list[Item], list[str]]] = scan
        self._suffix = suffix
        self._pipe = pipe
        self._what = what
        self._logger = logger
        self._items: tuple[Item, ...] = ()
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def items(self) -> list[Item]:
        with self._lock:
            return list(self._items)

    def find(self, name: str) -> Item | None:
        with self._lock:
            items = self._items
        return find_named(items, name, self._suffix)

    def rescan(self) -> None:
        if self.folder is None:
            return
        try:
            fresh, problems = self._scan(self.folder)
        except (ModelScanError, OSError) as error:
            fresh, problems = [], [f"rescan: {error}"]
        with self._lock:
            previous = {item.name for item in self._items}
            self._items = tuple(fresh)
        for problem in problems:
            if problem not in self._reported:
                self._logger.error(self._pipe, problem)
        self._reported = set(problems)
        current = [item.name for item in fresh]
        added = [name for name in current if name not in previous]
        removed = sorted(previous - set(current))
        if added:
            self._logger.debug(self._pipe, f"add {self._what}(s): {_quoted(added)};")
        if removed:
            self._logger.debug(self._pipe, f"remove {self._what}(s): {_quoted(removed)};")


class ToolRegistry:
    """Tools and tool environments of one service; either folder may be None (not configured)."""

    def __init__(
        self,
        tool_dir: Path | None,
        env_dir: Path | None,
        logger: LoggerProtocol,
        interval_s: float = 60.0,
    ) -> None:
        self._tools: _Listing[ToolFile] = _Listing(
            tool_dir, scan_tools, TOOL_SUFFIX, TOOL_PIPE, "tool", logger
        )
        self._envs: _Listing[ToolEnv] = _Listing(
            env_dir, scan_envs, ENV_SUFFIX, ENV_PIPE, "toolenv", logger
        )
        self._interval_s = interval_s
        self._logger = logger

    @property
    def configured(self) -> bool:
        return self._tools.folder is not None

    def tools(self) -> list[ToolFile]:
        return self._tools.items()

    def find_tool(self, name: str) -> ToolFile | None:
        return self._tools.find(name)

    def find_env(self, name: str) -> ToolEnv | None:
        return self._envs.find(name)

    def rescan(self) -> None:
        self._tools.rescan()
        self._envs.rescan()

    async def run_periodic(self, stop: asyncio.Event) -> None:
        """Rescan now, then ``interval_s`` after each scan, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.rescan)
            except Exception as error:
                self._logger.error(TOOL_PIPE, f"rescan: unexpected error: {error!r}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
