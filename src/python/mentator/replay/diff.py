"""A structural diff of two JSON values: where they differ, as JSON Pointers (RFC 6901)."""

from __future__ import annotations

import json
from typing import Any


def canonical(value: Any) -> str:
    """JSON text that equals for equal JSON values only (``1`` and ``1.0``, ``true`` and ``1``
    differ, as they do on the wire)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _pointer(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def json_diff(stored: Any, replayed: Any, path: str = "") -> list[dict[str, Any]]:
    """Each place where ``replayed`` differs from ``stored``: ``{"path", "stored", "replayed"}``,
    one of the two values left out where a key or an item exists on one side only."""
    if isinstance(stored, dict) and isinstance(replayed, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(stored) | set(replayed)):
            where = _pointer(path, key)
            if key not in replayed:
                changes.append({"path": where, "stored": stored[key]})
            elif key not in stored:
                changes.append({"path": where, "replayed": replayed[key]})
            else:
                changes += json_diff(stored[key], replayed[key], where)
        return changes
    if isinstance(stored, list) and isinstance(replayed, list):
        changes = []
        for index in range(max(len(stored), len(replayed))):
            where = _pointer(path, index)
            if index >= len(replayed):
                changes.append({"path": where, "stored": stored[index]})
            elif index >= len(stored):
                changes.append({"path": where, "replayed": replayed[index]})
            else:
                changes += json_diff(stored[index], replayed[index], where)
        return changes
    if canonical(stored) == canonical(replayed):
        return []
    return [{"path": path, "stored": stored, "replayed": replayed}]
