"""Find the ``*.gguf`` models under ``modelDir`` and name them (reference §4).

Rules kept from the original: recursive, depth-first, entries of each folder in byte-sorted
name order; ``.gguf`` matched case-insensitively; empty files skipped; ``sizeKb`` rounded up;
a basename seen earlier in the same scan becomes ``<basename> (<relative dir>)``.
Fixed: symlinked files and folders are followed, and a folder reached twice (a link loop or two
links to one folder) is scanned only once; a file whose GGUF header cannot be read is still
listed, just without ``layerCount``/``isReasoning``.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mentator.models.gguf_info import GgufError, GgufInfoCache, read_gguf_info

_MODEL_SUFFIX = ".gguf"


class ModelScanError(Exception):
    """``modelDir`` itself cannot be listed (missing, not a folder, no permission)."""


@dataclass(frozen=True)
class ModelInfo:
    """One discovered model; ``name`` is the canonical name used by the API and the engine."""

    name: str
    relative_file_name: str
    path: Path
    size_kb: int
    layer_count: int | None
    is_reasoning: bool | None
    size_bytes: int
    architecture: str | None = None
    context_length: int | None = None
    pooling_type: int | None = None  # embedding pooling the model declares (GGUF header)
    kv_bytes_per_token: int | None = None  # KV cache per context token (GGUF header)
    kv_restore_safe: bool = False  # a saved KV cache may be restored (GGUF header)

    def to_api(self) -> dict[str, object]:
        """The ``/state/models`` entry; unknown header facts are omitted like in the original."""
        entry: dict[str, object] = {
            "name": self.name,
            "relativeFileName": self.relative_file_name,
            "sizeKb": self.size_kb,
        }
        if self.layer_count is not None:
            entry["layerCount"] = self.layer_count
        if self.is_reasoning is not None:
            entry["isReasoning"] = self.is_reasoning
        return entry


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    """Folder entries in byte order of their names (what Node's readdir gave the original)."""
    with os.scandir(folder) as iterator:
        entries = list(iterator)
    return sorted(entries, key=lambda entry: os.fsencode(entry.name))


def _walk_model_files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files under ``root`` (links followed), depth-first, each folder visited once."""
    visited: set[tuple[int, int]] = set()

    def visit(folder: Path, folder_stat: os.stat_result) -> Iterator[tuple[Path, os.stat_result]]:
        identity = (folder_stat.st_dev, folder_stat.st_ino)
        if identity in visited:
            return  # a symlink loop or a second link to a folder already scanned
        visited.add(identity)
        try:
            entries = _sorted_entries(folder)
        except OSError:
            return  # an unreadable sub-folder must not hide the rest of the models
        for entry in entries:
            path = Path(entry.path)
            try:
                entry_stat = path.stat()  # follows symlinks
            except OSError:
                continue  # dangling link or vanished file
            if stat.S_ISDIR(entry_stat.st_mode):
                yield from visit(path, entry_stat)
            elif stat.S_ISREG(entry_stat.st_mode):
                yield path, entry_stat

    try:
        root_stat = root.stat()
    except OSError as error:
        raise ModelScanError(f'on read dir {root}: "{error}"') from error
    if not stat.S_ISDIR(root_stat.st_mode):
        raise ModelScanError(f'on read dir {root}: "not a directory"')
    try:
        os.scandir(root).close()
    except OSError as error:
        raise ModelScanError(f'on read dir {root}: "{error}"') from error
    yield from visit(root, root_stat)


# The same walk serves the tool and tool-env scans (reference §5.1: "same discovery rules").
walk_files = _walk_model_files


def scan_models(model_dir: Path, cache: GgufInfoCache | None = None) -> list[ModelInfo]:
    """All models under ``model_dir`` in scan order; ``ModelScanError`` if it is unusable."""
    root = Path(model_dir)
    models: list[ModelInfo] = []
    seen_names: set[str] = set()
    seen_paths: set[Path] = set()
    for path, file_stat in _walk_model_files(root):
        if not path.name.lower().endswith(_MODEL_SUFFIX) or file_stat.st_size <= 0:
            continue
        relative = PurePosixPath(*path.relative_to(root).parts)
        name = path.name
        if name in seen_names:
            relative_dir = str(relative.parent)  # "." for a top-level file
            name = f"{name} ({relative_dir})"
        seen_names.add(name)
        seen_paths.add(path)
        try:
            info = read_gguf_info(path, cache)
            layer_count, is_reasoning = info.layer_count, info.is_reasoning
            architecture, context_length = info.architecture, info.context_length
            pooling_type, kv_bytes = info.pooling_type, info.kv_bytes_per_token
            restore_safe = info.kv_restore_safe
        except (GgufError, OSError):
            layer_count = is_reasoning = architecture = context_length = pooling_type = None
            kv_bytes = None
            restore_safe = False
        models.append(
            ModelInfo(
                name=name,
                relative_file_name=str(relative),
                path=path.absolute(),
                size_kb=max(1, math.ceil(file_stat.st_size / 1024)),
                layer_count=layer_count,
                is_reasoning=is_reasoning,
                size_bytes=file_stat.st_size,
                architecture=architecture,
                context_length=context_length,
                pooling_type=pooling_type,
                kv_bytes_per_token=kv_bytes,
                kv_restore_safe=restore_safe,
            )
        )
    if cache is not None:
        cache.retain(seen_paths)
    return models


def find_model(models: Sequence[ModelInfo], requested: str) -> ModelInfo | None:
    """Case-insensitive exact name first, then ``<requested>.gguf`` (reference §4 lookup)."""
    wanted = requested.casefold()
    for model in models:
        if model.name.casefold() == wanted:
            return model
    with_suffix = wanted + _MODEL_SUFFIX
    for model in models:
        if model.name.casefold() == with_suffix:
            return model
    return None
