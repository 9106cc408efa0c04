"""What the service needs to know about a GGUF file: layer count, reasoning template, context size.

Only the key/value header at the start of the file is read. ``gguf.GGUFReader`` (llama.cpp's
reader) would give the same values, but it builds a numpy view for every element of every
metadata array — the tokenizer vocabulary alone is 50k-250k strings — and took 3-5 s for a 135M
model in our measurements, and pulls numpy into the image. Walking the header ourselves (the
format constants are in ``gguf_format``) costs milliseconds and reads only the header pages; the
tests check the result against ``gguf.GGUFReader`` on a real model.

Results are cached by ``(path, size, mtime)`` so the periodic rescan does not re-read unchanged
files (the original re-read every file, sometimes whole files, every minute).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from mentator.models.gguf_format import GGUF_MAGIC, GGUFValueType

# Byte sizes of the fixed-width value types (GGUF spec; STRING and ARRAY are variable).
_SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_INTEGER_TYPES = frozenset(
    {
        GGUFValueType.UINT8,
        GGUFValueType.INT8,
        GGUFValueType.UINT16,
        GGUFValueType.INT16,
        GGUFValueType.UINT32,
        GGUFValueType.INT32,
        GGUFValueType.UINT64,
        GGUFValueType.INT64,
    }
)
_SUPPORTED_VERSIONS = (1, 2, 3)
# A header string longer than this is not metadata we care about (chat templates are < 64 KiB;
# allow generous headroom) and usually means a corrupt length field.
_MAX_STRING_BYTES = 64 * 1024 * 1024
_THINK_MARKERS = ("<think>", "</think>")


class GgufError(Exception):
    """Not a readable GGUF model (wrong magic, unsupported version, truncated header)."""


@dataclass(frozen=True)
class GgufInfo:
    """Header facts; ``None`` means the header does not say."""

    layer_count: int | None
    is_reasoning: bool | None
    architecture: str | None
    context_length: int | None
    chat_template: bool
    # llama.cpp's pooling type for embeddings (1 mean, 2 cls, 3 last, 4 rank); None: not declared
    pooling_type: int | None = None
    # KV cache bytes per token of context (f16 keys and values, all layers); None: the header
    # lacks the attention geometry. The residency estimate (`engine.residency`) reads it.
    kv_bytes_per_token: int | None = None
    # Whether a slot's saved KV cache can be restored safely (warm swaps): not for sliding-
    # window attention or hybrid / recurrent models, whose cache is not a plain token list
    # (llama.cpp #28194).
    kv_restore_safe: bool = True


class _HeaderCursor:
    """Sequential reader over the mmapped header; every read is bounds-checked."""

    def __init__(self, data: mmap.mmap, path: Path, byte_order: str) -> None:
        self._data = data
        self._path = path
        self._order = byte_order
        self.offset = 0

    def _need(self, size: int) -> None:
        if size < 0 or self.offset + size > len(self._data):
            raise GgufError(
                f"{self._path}: GGUF header is truncated or corrupt "
                f"(needs {size} bytes at offset {self.offset}, file has {len(self._data)})"
            )

    def scalar(self, fmt: str) -> int | float | bool:
        full = self._order + fmt
        size = struct.calcsize(full)
        self._need(size)
        (value,) = struct.unpack_from(full, self._data, self.offset)
        self.offset += size
        return value  # type: ignore[no-any-return]

    def length(self, wide: bool) -> int:
        return int(self.scalar("Q" if wide else "I"))

    def string(self, wide: bool) -> str:
        size = self.length(wide)
        if size > _MAX_STRING_BYTES:
            raise GgufError(
                f"{self._path}: GGUF header string of {size} bytes at offset {self.offset}"
            )
        self._need(size)
        raw = self._data[self.offset : self.offset + size]
        self.offset += size
        return raw.decode("utf-8", errors="replace")

    def skip_string(self, wide: bool) -> None:
        size = self.length(wide)
        self._need(size)
        self.offset += size


def _read_value(cursor: _HeaderCursor, value_type: int, wide: bool) -> object:
    """Read one value; arrays are skipped (returned as ``None``) because nothing we need is one."""
    if value_type in _SCALAR_FORMATS:
        return cursor.scalar(_SCALAR_FORMATS[value_type])
    if value_type == GGUFValueType.STRING:
        return cursor.string(wide)
    if value_type == GGUFValueType.ARRAY:
        element_type = int(cursor.scalar("I"))
        count = cursor.length(wide)
        if element_type in _SCALAR_FORMATS:
            size = struct.calcsize("<" + _SCALAR_FORMATS[element_type]) * count
            cursor._need(size)
            cursor.offset += size
        elif element_type == GGUFValueType.STRING:
            for _ in range(count):
                cursor.skip_string(wide)
        elif element_type == GGUFValueType.ARRAY:
            for _ in range(count):
                _read_value(cursor, GGUFValueType.ARRAY, wide)
        else:
            raise GgufError(f"unknown GGUF array element type {element_type}")
        return None
    raise GgufError(f"unknown GGUF value type {value_type}")


def _read_metadata(path: Path) -> dict[str, object]:
    """All scalar and string key/values of the header (arrays are left out)."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size < 8:
                raise GgufError(f"{path}: not a GGUF file (too short for a GGUF header)")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _walk_header(data, path)
    except OSError as error:
        raise GgufError(f"{path}: cannot read file: {error}") from error


def _walk_header(data: mmap.mmap, path: Path) -> dict[str, object]:
    (magic,) = struct.unpack_from("<I", data, 0)
    if magic != GGUF_MAGIC:
        raise GgufError(
            f"{path}: not a GGUF file (magic bytes {bytes(data[0:4])!r}, expected b'GGUF')"
        )
    (version,) = struct.unpack_from("<I", data, 4)
    byte_order = "<"
    if version & 0xFFFF == 0:
        # A file written on a big-endian machine: the version reads byte-swapped.
        byte_order = ">"
        (version,) = struct.unpack_from(">I", data, 4)
    if version not in _SUPPORTED_VERSIONS:
        raise GgufError(f"{path}: unsupported GGUF version {version} (supported: 1, 2, 3)")
    cursor = _HeaderCursor(data, path, byte_order)
    cursor.offset = 8
    wide = version >= 2  # version 1 used 32-bit counts and lengths
    cursor.length(wide)  # tensor count, not needed
    kv_count = cursor.length(wide)
    metadata: dict[str, object] = {}
    for _ in range(kv_count):
        key = cursor.string(wide)
        value_type = int(cursor.scalar("I"))
        metadata[key] = _read_value(cursor, value_type, wide)
    return metadata


def _block_count(metadata: dict[str, object], architecture: str | None) -> int | None:
    candidates: list[object] = []
    if architecture is not None:
        candidates.append(metadata.get(f"{architecture}.block_count"))
    candidates.extend(value for key, value in metadata.items() if key.endswith(".block_count"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _context_length(metadata: dict[str, object], architecture: str | None) -> int | None:
    if architecture is None:
        return None
    value = metadata.get(f"{architecture}.context_length")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _pooling_type(metadata: dict[str, object], architecture: str | None) -> int | None:
    if architecture is None:
        return None
    value = metadata.get(f"{architecture}.pooling_type")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _positive(metadata: dict[str, object], key: str) -> int | None:
    value = metadata.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _kv_bytes_per_token(metadata: dict[str, object], architecture: str | None) -> int | None:
    """layers * KV heads * (key + value head size) * 2 bytes (llama.cpp's default f16 cache)."""
    if architecture is None:
        return None
    layers = _positive(metadata, f"{architecture}.block_count")
    heads = _positive(metadata, f"{architecture}.attention.head_count")
    kv_heads = _positive(metadata, f"{architecture}.attention.head_count_kv") or heads
    width = _positive(metadata, f"{architecture}.embedding_length")
    head_size = width // heads if width and heads else None
    key_size = _positive(metadata, f"{architecture}.attention.key_length") or head_size
    value_size = _positive(metadata, f"{architecture}.attention.value_length") or head_size
    if not (layers and kv_heads and key_size and value_size):
        return None
    return layers * kv_heads * (key_size + value_size) * 2


# Header key parts that mark a cache restore as unsafe: sliding-window attention, and the
# state of recurrent / hybrid layers (Mamba's ssm, RWKV's wkv, LFM2's shortconv).
_UNSAFE_RESTORE_MARKS = (".attention.sliding_window", ".ssm.", ".wkv.", ".shortconv.")


def _kv_restore_safe(metadata: dict[str, object]) -> bool:
    return not any(mark in key for key in metadata for mark in _UNSAFE_RESTORE_MARKS)


def parse_gguf_info(path: Path) -> GgufInfo:
    """Read the header of ``path`` (no cache). Raises ``GgufError`` for anything unreadable."""
    metadata = _read_metadata(path)
    architecture_value = metadata.get("general.architecture")
    architecture = architecture_value if isinstance(architecture_value, str) else None
    template = metadata.get("tokenizer.chat_template")
    has_template = isinstance(template, str)
    is_reasoning = (
        any(marker in template for marker in _THINK_MARKERS) if isinstance(template, str) else None
    )
    return GgufInfo(
        layer_count=_block_count(metadata, architecture),
        is_reasoning=is_reasoning,
        architecture=architecture,
        context_length=_context_length(metadata, architecture),
        chat_template=has_template,
        pooling_type=_pooling_type(metadata, architecture),
        kv_bytes_per_token=_kv_bytes_per_token(metadata, architecture),
        kv_restore_safe=_kv_restore_safe(metadata),
    )


class GgufInfoCache:
    """Remembers parsed headers by ``(path, size, mtime_ns)``; thread-safe.

    Errors are cached too, so a broken file is not re-parsed every minute either; touching or
    replacing the file changes its key and triggers a fresh read. Entries for files that
    disappeared are dropped by ``retain``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[int, int, GgufInfo | GgufError]] = {}

    def get(self, path: Path) -> GgufInfo:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._entries.get(path)
        if cached is not None and cached[:2] == key:
            result = cached[2]
        else:
            try:
                result = parse_gguf_info(path)
            except GgufError as error:
                result = error
            with self._lock:
                self._entries[path] = (key[0], key[1], result)
        if isinstance(result, GgufError):
            raise result
        return result

    def retain(self, paths: set[Path]) -> None:
        """Forget every entry whose path is not in ``paths``."""
        with self._lock:
            for stale in [known for known in self._entries if known not in paths]:
                del self._entries[stale]


def read_gguf_info(path: Path | str, cache: GgufInfoCache | None = None) -> GgufInfo:
    """Header facts of one GGUF file, through ``cache`` when given."""
    file_path = Path(path)
    if cache is None:
        return parse_gguf_info(file_path)
    return cache.get(file_path)
