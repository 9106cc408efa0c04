"""Fixtures for the model tests: small but real GGUF files written with the ``gguf`` package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

THINK_TEMPLATE = "{% for m in messages %}<think>{{ m['content'] }}</think>{% endfor %}"
PLAIN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    block_count: int | None = 12,
    context_length: int | None = 2048,
    chat_template: str | None = PLAIN_TEMPLATE,
    vocab: list[str] | None = None,
    extra: dict[str, int] | None = None,
) -> Path:
    """A GGUF with the given header keys and one tiny tensor; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    if block_count is not None:
        writer.add_block_count(block_count)
    if context_length is not None:
        writer.add_context_length(context_length)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (extra or {}).items():
        writer.add_uint32(key, value)
    writer.add_token_list(vocab if vocab is not None else ["<s>", "</s>", "a", "b"])
    writer.add_array("test.float_list", [1.0, 2.0, 3.0])
    writer.add_tensor("tok_embd", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


GgufFactory = Callable[..., Path]


@pytest.fixture
def make_gguf() -> GgufFactory:
    """``make_gguf(path, **header)`` writes a GGUF file (see ``write_gguf``)."""
    return write_gguf
