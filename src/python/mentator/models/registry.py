"""The live list of models: rescanned every ``interval_s`` after the previous scan and on demand.

Readers (``models``, ``find``) never block on a scan: each rescan builds a new tuple and swaps it
in under a lock. Added/removed names and scan errors are logged on the ``MANAGER.MODEL`` pipe in
the original's wording (reference §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

from mentator.logging_protocol import LoggerProtocol
from mentator.models.discovery import ModelInfo, ModelScanError, find_model, scan_models
from mentator.models.gguf_info import GgufInfoCache

LOG_PIPE = "MANAGER.MODEL"


def _quoted_names(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


class ModelRegistry:
    """Owns the model list of one ``model_dir``; safe to use from threads and the event loop."""

    def __init__(self, model_dir: Path, logger: LoggerProtocol, interval_s: float = 60.0) -> None:
        self._model_dir = Path(model_dir)
        self._logger = logger
        self._interval_s = interval_s
        self._cache = GgufInfoCache()
        self._models: tuple[ModelInfo, ...] = ()
        self._scanned = False
        self._state_lock = threading.Lock()
        # Serialises whole rescans so two callers never interleave their add/remove logs.
        self._scan_lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def scanned(self) -> bool:
        """True once the first scan finished (successfully or not)."""
        with self._state_lock:
            return self._scanned

    def models(self) -> list[ModelInfo]:
        with self._state_lock:
            return list(self._models)

    def find(self, name: str) -> ModelInfo | None:
        """Case-insensitive lookup, with or without ``.gguf``; ``None`` before the first scan."""
        with self._state_lock:
            models = self._models
        return find_model(models, name)

    def rescan(self) -> tuple[list[str], list[str]]:
        """Scan now (blocking file I/O); returns the (added, removed) model names."""
        with self._scan_lock:
            try:
                fresh = scan_models(self._model_dir, self._cache)
            except ModelScanError as error:
                # Like the original: a failed scan empties the list, so requests fail clearly
                # instead of pointing at files that may be gone.
                fresh = []
                self._logger.error(LOG_PIPE, f"rescan: {error}")
            except OSError as error:  # defensive: never let the periodic task die
                fresh = []
                self._logger.error(LOG_PIPE, f'rescan: on read dir {self._model_dir}: "{error}"')
            with self._state_lock:
                previous = {model.name for model in self._models}
                self._models = tuple(fresh)
                self._scanned = True
            current = [model.name for model in fresh]
            added = [name for name in current if name not in previous]
            current_set = set(current)
            removed = sorted(name for name in previous if name not in current_set)
        if added:
            self._logger.debug(LOG_PIPE, f"add model(s): {_quoted_names(added)};")
        if removed:
            self._logger.debug(LOG_PIPE, f"remove model(s): {_quoted_names(removed)};")
        return added, removed

    async def run_periodic(self, stop: asyncio.Event, *, scan_first: bool = True) -> None:
        """Rescan (at once when ``scan_first``), then ``interval_s`` after each scan finishes.

        Returns when ``stop`` is set. File I/O runs in a worker thread so the event loop stays
        responsive while a slow disk is scanned.
        """
        if not scan_first:
            await self._wait(stop)
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.rescan)
            except Exception as error:
                self._logger.error(LOG_PIPE, f"rescan: unexpected error: {error!r}")
            await self._wait(stop)

    async def _wait(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
