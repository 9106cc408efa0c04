"""The few constants of the GGUF file format the header walker needs (GGUF spec v1-v3).

Why not import them from the `gguf` package: `gguf` imports numpy at module load, and numpy
(with its bundled OpenBLAS) is 73 MB of the image for nothing else. The tests cross-check this
walker against `gguf.GGUFReader` (llama.cpp's own reader) on a real model, so the official
reader stays the reference without being shipped.
"""

from __future__ import annotations

from enum import IntEnum

# "GGUF" read as a little-endian uint32.
GGUF_MAGIC = 0x46554747


class GGUFValueType(IntEnum):
    """Metadata value types, numbered as in the spec (and in `gguf.GGUFValueType`)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12
