from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf import GGUFReader

from mentator.models.gguf_info import GgufError, GgufInfoCache, parse_gguf_info, read_gguf_info

THINK = "{% for m in messages %}<think>{{ m['content'] }}</think>{% endfor %}"

MakeGguf = Callable[..., Path]


def test_reads_layers_context_and_plain_template(tmp_path: Path, make_gguf: MakeGguf) -> None:
    path = make_gguf(tmp_path / "m.gguf", arch="qwen2", block_count=24, context_length=32768)
    info = read_gguf_info(path)
    assert info.layer_count == 24
    assert info.context_length == 32768
    assert info.architecture == "qwen2"
    assert info.chat_template is True
    assert info.is_reasoning is False


def test_think_marker_in_template_means_reasoning(tmp_path: Path, make_gguf: MakeGguf) -> None:
    path = make_gguf(tmp_path / "r.gguf", chat_template=THINK)
    assert read_gguf_info(path).is_reasoning is True


def test_no_template_means_reasoning_unknown(tmp_path: Path, make_gguf: MakeGguf) -> None:
    info = read_gguf_info(make_gguf(tmp_path / "n.gguf", chat_template=None))
    assert info.is_reasoning is None
    assert info.chat_template is False


def test_missing_block_count_is_unknown(tmp_path: Path, make_gguf: MakeGguf) -> None:
    info = read_gguf_info(make_gguf(tmp_path / "b.gguf", block_count=None, context_length=None))
    assert info.layer_count is None
    assert info.context_length is None


def test_large_vocabulary_is_skipped_not_parsed(tmp_path: Path, make_gguf: MakeGguf) -> None:
    vocab = [f"tok{i}" for i in range(20000)]
    info = read_gguf_info(make_gguf(tmp_path / "v.gguf", block_count=7, vocab=vocab))
    assert info.layer_count == 7


def test_not_a_gguf_file_raises_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"this is not a model at all")
    with pytest.raises(GgufError, match="not a GGUF file"):
        read_gguf_info(path)


def test_tiny_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GG")
    with pytest.raises(GgufError, match="too short"):
        read_gguf_info(path)


def test_unsupported_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    with pytest.raises(GgufError, match="unsupported GGUF version 9"):
        read_gguf_info(path)


def test_truncated_header_raises(tmp_path: Path, make_gguf: MakeGguf) -> None:
    full = make_gguf(tmp_path / "full.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full[:60])
    with pytest.raises(GgufError, match="truncated or corrupt"):
        read_gguf_info(cut)


def test_cache_skips_unchanged_files_and_rereads_changed_ones(
    tmp_path: Path, make_gguf: MakeGguf, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_gguf(tmp_path / "c.gguf", block_count=3)
    cache = GgufInfoCache()
    calls: list[Path] = []
    import mentator.models.gguf_info as module

    original = module.parse_gguf_info

    def counting(p: Path) -> object:
        calls.append(p)
        return original(p)

    monkeypatch.setattr(module, "parse_gguf_info", counting)
    assert read_gguf_info(path, cache).layer_count == 3
    assert read_gguf_info(path, cache).layer_count == 3
    assert len(calls) == 1
    make_gguf(path, block_count=5)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert read_gguf_info(path, cache).layer_count == 5
    assert len(calls) == 2


def test_cache_remembers_errors_and_retain_forgets(tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"x" * 100)
    cache = GgufInfoCache()
    for _ in range(2):
        with pytest.raises(GgufError):
            read_gguf_info(path, cache)
    cache.retain(set())
    assert cache._entries == {}


def test_real_model_matches_llama_cpp_reader(test_model: Path) -> None:
    # test_model (tests/python/mentator/conftest.py): skips locally without the model, FAILS in CI.
    info = parse_gguf_info(test_model)
    reader = GGUFReader(test_model)
    arch = reader.fields["general.architecture"].contents()
    assert info.architecture == arch
    assert info.layer_count == reader.fields[f"{arch}.block_count"].contents()
    assert info.context_length == reader.fields[f"{arch}.context_length"].contents()
    template = reader.fields["tokenizer.chat_template"].contents()
    assert info.pooling_type is None  # SmolLM2 declares none: the engine pools the last token
    assert info.is_reasoning == ("<think>" in template or "</think>" in template)


def test_format_constants_match_the_gguf_package() -> None:
    import gguf

    from mentator.models import gguf_format

    assert gguf_format.GGUF_MAGIC == gguf.GGUF_MAGIC
    assert {m.name: m.value for m in gguf_format.GGUFValueType} == {
        m.name: m.value for m in gguf.GGUFValueType
    }


def test_kv_bytes_per_token_from_the_attention_geometry(
    tmp_path: Path, make_gguf: MakeGguf
) -> None:
    geometry = {
        "llama.embedding_length": 576,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
    }
    info = read_gguf_info(make_gguf(tmp_path / "g.gguf", block_count=30, extra=geometry))
    assert info.kv_bytes_per_token == 30 * 3 * (64 + 64) * 2  # SmolLM2-135M: 23,040
    assert info.kv_restore_safe is True
    assert read_gguf_info(make_gguf(tmp_path / "n.gguf")).kv_bytes_per_token is None


def test_sliding_window_or_recurrent_state_makes_a_restore_unsafe(
    tmp_path: Path, make_gguf: MakeGguf
) -> None:
    for name, key in [("swa", "llama.attention.sliding_window"), ("ssm", "mamba.ssm.conv_kernel")]:
        info = read_gguf_info(make_gguf(tmp_path / f"{name}.gguf", extra={key: 4096}))
        assert info.kv_restore_safe is False, name
