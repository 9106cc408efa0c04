"""Warm swaps: the KV cache of an evicted model's slots is saved to disk, and restored into the
model's new child when it is loaded again, so a long conversation that comes back after a swap
needs no new prefill.

llama-server does the saving and restoring (``--slot-save-path``, ``POST
/slots/{id}?action=save|restore``); this module names and bounds the files. A file is only valid
for the same model file, context size per slot and cache type, so its name carries a key of the
model file (path, size, modification time), the slot context and the slot count. Matching a
request's prompt to a restored cache is llama-server's own slot choice: it sends a prompt to the
slot whose cache shares the longest prefix with it (measured: a restored 46-token chat answered
with ``prompt_n`` 1 and the same greedy text as the cold run).

Only models whose GGUF header makes a restore safe (`ModelLike.kv_restore_safe`: no sliding-
window attention, no recurrent / hybrid state) are saved. The files live in ``kv-cache/`` beside
the database (the data folder); the oldest are deleted when they exceed ``warmSwapMb``.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from mentator.engine.ports import ModelLike

SUFFIX = ".kv"


class WarmStore:
    """The saved slot files in ``folder``, at most ``limit_mb`` together."""

    def __init__(self, folder: Path, limit_mb: int) -> None:
        self.folder = folder
        self.limit_bytes = limit_mb * 1024 * 1024

    def key(self, model: ModelLike, slot_context: int | None, parallel: int) -> str | None:
        """The files' key for this model and context; None: the file is gone."""
        try:
            stat = model.path.stat()
        except OSError:
            return None
        text = (
            f"{model.path.absolute()}|{stat.st_size}|{stat.st_mtime_ns}|{slot_context}|{parallel}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def file_name(self, key: str, slot: int) -> str:
        # A bare name: llama-server refuses paths, and resolves it in --slot-save-path.
        return f"{key}-{slot}{SUFFIX}"

    def saved(self, key: str) -> list[str]:
        """The saved files of ``key``, most recent first."""
        files = [p for p in self.folder.glob(f"{key}-*{SUFFIX}") if p.is_file()]
        files.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        return [p.name for p in files]

    def drop_older_than(self, seconds: float, now: float) -> int:
        """Delete the files not written for ``seconds`` (the retention job); how many."""
        dropped = 0
        for path in self.folder.glob(f"*{SUFFIX}"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > seconds:
                    path.unlink()
                    dropped += 1
        return dropped

    def prune(self) -> None:
        """Delete the oldest files until the rest fit ``limit_mb``."""
        files = [p for p in self.folder.glob(f"*{SUFFIX}") if p.is_file()]
        files.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        total = 0
        for path in files:
            total += path.stat().st_size
            if total > self.limit_bytes:
                with contextlib.suppress(OSError):
                    path.unlink()
