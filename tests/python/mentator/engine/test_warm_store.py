"""`engine.warm.WarmStore`: file names by model + context, the disk bound, the retention."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mentator.engine.warm import WarmStore


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    size_kb: int = 1
    pooling_type: int | None = None
    layer_count: int | None = None
    context_length: int | None = None
    kv_bytes_per_token: int | None = None
    kv_restore_safe: bool = True


def test_the_key_changes_with_the_file_the_context_and_the_slots(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"one")
    store = WarmStore(tmp_path / "kv", 10)
    model = Model("m.gguf", path)
    key = store.key(model, 1024, 2)
    assert key == store.key(model, 1024, 2)
    assert key != store.key(model, 2048, 2) and key != store.key(model, 1024, 1)
    path.write_bytes(b"other contents")  # a replaced model file: its old cache is not valid
    assert key != store.key(model, 1024, 2)
    assert store.key(Model("gone", tmp_path / "gone.gguf"), 1024, 2) is None


def test_prune_keeps_the_newest_files_within_the_limit(tmp_path: Path) -> None:
    store = WarmStore(tmp_path, 1)  # 1 MB
    now = time.time()
    for index in range(3):
        path = tmp_path / store.file_name(f"k{index}", 0)
        path.write_bytes(b"x" * 400 * 1024)
        os.utime(path, (now - 100 + index, now - 100 + index))
    store.prune()
    assert sorted(p.name for p in tmp_path.glob("*.kv")) == ["k1-0.kv", "k2-0.kv"]
    assert store.saved("k2") == ["k2-0.kv"]


def test_retention_drops_old_files(tmp_path: Path) -> None:
    store = WarmStore(tmp_path, 100)
    old, new = tmp_path / "a-0.kv", tmp_path / "b-0.kv"
    for path in (old, new):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert store.drop_older_than(86400, time.time()) == 1
    assert not old.exists() and new.exists()
