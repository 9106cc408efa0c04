from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mentator.models.discovery import ModelScanError, find_model, scan_models
from mentator.models.gguf_info import GgufInfoCache

MakeGguf = Callable[..., Path]


def names(model_dir: Path) -> list[str]:
    return [model.name for model in scan_models(model_dir)]


def test_recursive_byte_sorted_depth_first(tmp_path: Path, make_gguf: MakeGguf) -> None:
    make_gguf(tmp_path / "b.gguf")
    make_gguf(tmp_path / "B2.gguf")
    make_gguf(tmp_path / "a" / "z.gguf")
    make_gguf(tmp_path / "a" / "c" / "y.gguf")
    make_gguf(tmp_path / "a" / "d.gguf")
    # byte order: uppercase before lowercase; a folder is entered where its name sorts
    assert names(tmp_path) == ["B2.gguf", "y.gguf", "d.gguf", "z.gguf", "b.gguf"]


def test_extension_case_insensitive_and_empty_or_other_files_skipped(
    tmp_path: Path, make_gguf: MakeGguf
) -> None:
    make_gguf(tmp_path / "UP.GGUF")
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.gguf").mkdir()
    assert names(tmp_path) == ["UP.GGUF"]


def test_duplicate_basenames_get_relative_dir(tmp_path: Path, make_gguf: MakeGguf) -> None:
    make_gguf(tmp_path / "a" / "m.gguf")
    make_gguf(tmp_path / "b" / "c" / "m.gguf")
    make_gguf(tmp_path / "m.gguf")
    models = scan_models(tmp_path)
    assert [m.name for m in models] == ["m.gguf", "m.gguf (b/c)", "m.gguf (.)"]
    assert [m.relative_file_name for m in models] == ["a/m.gguf", "b/c/m.gguf", "m.gguf"]


def test_size_kb_rounds_up_with_minimum_one(tmp_path: Path) -> None:
    (tmp_path / "one.gguf").write_bytes(b"x")
    (tmp_path / "two.gguf").write_bytes(b"x" * 1025)
    by_name = {m.name: m for m in scan_models(tmp_path)}
    assert by_name["one.gguf"].size_kb == 1
    assert by_name["two.gguf"].size_kb == 2
    assert by_name["two.gguf"].size_bytes == 1025


def test_unreadable_header_still_listed_without_facts(tmp_path: Path) -> None:
    (tmp_path / "junk.gguf").write_bytes(b"definitely not gguf")
    (model,) = scan_models(tmp_path)
    assert model.layer_count is None and model.is_reasoning is None
    assert model.to_api() == {"name": "junk.gguf", "relativeFileName": "junk.gguf", "sizeKb": 1}


def test_to_api_has_original_keys(tmp_path: Path, make_gguf: MakeGguf) -> None:
    path = make_gguf(tmp_path / "sub" / "q.gguf", block_count=24)
    (model,) = scan_models(tmp_path)
    assert model.path == path.absolute()
    assert model.to_api() == {
        "name": "q.gguf",
        "relativeFileName": "sub/q.gguf",
        "sizeKb": model.size_kb,
        "layerCount": 24,
        "isReasoning": False,
    }


def test_symlinked_files_and_folders_are_followed(tmp_path: Path, make_gguf: MakeGguf) -> None:
    store = tmp_path / "store"
    models_dir = tmp_path / "models"
    make_gguf(store / "real.gguf")
    make_gguf(store / "deep" / "inner.gguf")
    models_dir.mkdir()
    (models_dir / "linked.gguf").symlink_to(store / "real.gguf")
    (models_dir / "linkdir").symlink_to(store / "deep")
    (models_dir / "dangling.gguf").symlink_to(tmp_path / "nowhere.gguf")
    models = scan_models(models_dir)
    assert [m.relative_file_name for m in models] == ["linkdir/inner.gguf", "linked.gguf"]
    assert all(m.layer_count == 12 for m in models)


def test_symlink_loops_are_scanned_once(tmp_path: Path, make_gguf: MakeGguf) -> None:
    make_gguf(tmp_path / "a" / "m.gguf")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)  # a/loop -> root -> a -> loop ...
    (tmp_path / "again").symlink_to(tmp_path / "a")
    assert [m.relative_file_name for m in scan_models(tmp_path)] == ["a/m.gguf"]


def test_missing_model_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelScanError, match=r"on read dir .*nope"):
        scan_models(tmp_path / "nope")


def test_model_dir_that_is_a_file_raises(tmp_path: Path) -> None:
    file_path = tmp_path / "file"
    file_path.write_text("x")
    with pytest.raises(ModelScanError, match="not a directory"):
        scan_models(file_path)


def test_scan_uses_and_prunes_cache(tmp_path: Path, make_gguf: MakeGguf) -> None:
    path = make_gguf(tmp_path / "m.gguf")
    cache = GgufInfoCache()
    scan_models(tmp_path, cache)
    assert path in cache._entries
    path.unlink()
    assert scan_models(tmp_path, cache) == []
    assert cache._entries == {}


def test_find_model_rules(tmp_path: Path, make_gguf: MakeGguf) -> None:
    make_gguf(tmp_path / "Qwen.gguf")
    make_gguf(tmp_path / "x" / "Qwen.gguf")
    models = scan_models(tmp_path)
    assert find_model(models, "qwen.GGUF") is models[0]
    assert find_model(models, "QWEN") is models[0]
    assert find_model(models, "qwen.gguf (x)") is models[1]
    assert find_model(models, "qwen.gguf (y)") is None
    assert find_model(models, "") is None
