from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mentator_build.model_source import (
    ENV_DEFAULT_MODEL,
    ModelError,
    install_default_model,
    resolve_model,
    sha256_of,
    verify_gguf,
)

MakeGguf = Callable[[Path], Path]


def _no_smollm2() -> Path:
    raise AssertionError("smollm2 must not be fetched here")


@pytest.fixture
def owner(tmp_path: Path, make_gguf: MakeGguf) -> Path:
    return make_gguf(tmp_path / "owner" / "qwen2.5-0.5b-instruct-q8_0.gguf")


# --- resolution order ---------------------------------------------------------------------------


def test_flag_wins_over_env_and_owner(tmp_path: Path, make_gguf: MakeGguf, owner: Path) -> None:
    flag = make_gguf(tmp_path / "flag.gguf")
    env = make_gguf(tmp_path / "env.gguf")
    choice = resolve_model(str(flag), {ENV_DEFAULT_MODEL: str(env)}, owner, _no_smollm2)
    assert choice.path == flag
    assert choice.origin == "--model"


def test_env_wins_over_owner(tmp_path: Path, make_gguf: MakeGguf, owner: Path) -> None:
    env = make_gguf(tmp_path / "env.gguf")
    choice = resolve_model(None, {ENV_DEFAULT_MODEL: str(env)}, owner, _no_smollm2)
    assert choice.path == env
    assert choice.origin == ENV_DEFAULT_MODEL


def test_owner_default_when_nothing_given(owner: Path) -> None:
    choice = resolve_model(None, {ENV_DEFAULT_MODEL: ""}, owner, _no_smollm2)
    assert choice.path == owner


def test_smollm2_keyword_uses_the_provider(
    tmp_path: Path, make_gguf: MakeGguf, owner: Path
) -> None:
    smol = make_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    fetched: list[Path] = []

    def provider() -> Path:
        fetched.append(smol)
        return smol

    choice = resolve_model("SmolLM2", {}, owner, provider)
    assert choice.path == smol
    assert fetched == [smol]
    assert "smollm2" in choice.origin


def test_smollm2_from_env(tmp_path: Path, make_gguf: MakeGguf, owner: Path) -> None:
    smol = make_gguf(tmp_path / "s.gguf")
    assert resolve_model(None, {ENV_DEFAULT_MODEL: "smollm2"}, owner, lambda: smol).path == smol


def test_nothing_found_lists_every_way(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model(None, {}, tmp_path / "absent.gguf", _no_smollm2)
    message = str(caught.value)
    for hint in ("--model", "smollm2", ENV_DEFAULT_MODEL, "absent.gguf"):
        assert hint in message


def test_flag_pointing_at_nothing_is_an_error(tmp_path: Path, owner: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        resolve_model(str(tmp_path / "typo.gguf"), {}, owner, _no_smollm2)


# --- GGUF verification --------------------------------------------------------------------------


def test_real_gguf_passes(tmp_path: Path, make_gguf: MakeGguf) -> None:
    verify_gguf(make_gguf(tmp_path / "ok.gguf"))


def test_not_gguf_is_rejected_with_its_magic(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError) as caught:
        verify_gguf(bad)
    assert "is not a GGUF model" in str(caught.value)
    assert "b'PK\\x03\\x04'" in str(caught.value)


def test_truncated_gguf_is_rejected(tmp_path: Path, make_gguf: MakeGguf) -> None:
    good = make_gguf(tmp_path / "good.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        verify_gguf(cut)


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the model file"):
        verify_gguf(tmp_path / "missing.gguf")


# --- copy + sha256 record -----------------------------------------------------------------------


def test_install_copies_and_records_sha256(tmp_path: Path, make_gguf: MakeGguf) -> None:
    source = make_gguf(tmp_path / "src" / "m.gguf")
    before = (source.read_bytes(), source.stat().st_mtime_ns, source.stat().st_ino)
    dest = tmp_path / "models" / "default"
    installed = install_default_model(source, dest)

    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert installed.sha256 == expected == sha256_of(installed.path)
    assert installed.path == dest / "m.gguf"
    assert installed.path.read_bytes() == before[0]
    assert installed.sha256_file.read_text() == f"{expected}  m.gguf\n"
    # the user's original is untouched (same bytes, same file, same mtime)
    assert (source.read_bytes(), source.stat().st_mtime_ns, source.stat().st_ino) == before


def test_install_removes_other_models_but_keeps_other_files(
    tmp_path: Path, make_gguf: MakeGguf
) -> None:
    dest = tmp_path / "default"
    dest.mkdir()
    (dest / "README.md").write_text("keep me")
    (dest / "old.gguf").write_bytes(b"GGUF old")
    (dest / "old.gguf.sha256").write_text("x  old.gguf\n")
    install_default_model(make_gguf(tmp_path / "new.gguf"), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "new.gguf", "new.gguf.sha256"]


def test_identical_copy_is_kept(tmp_path: Path, make_gguf: MakeGguf) -> None:
    source = make_gguf(tmp_path / "m.gguf")
    dest = tmp_path / "default"
    first = install_default_model(source, dest)
    os.utime(first.path, ns=(1_000_000_000, 1_000_000_000))
    install_default_model(source, dest)
    assert first.path.stat().st_mtime_ns == 1_000_000_000


def test_installing_the_copy_onto_itself_is_refused(tmp_path: Path, make_gguf: MakeGguf) -> None:
    dest = tmp_path / "default"
    copy = make_gguf(dest / "m.gguf")
    with pytest.raises(ModelError, match="pass the path of the original"):
        install_default_model(copy, dest)
    assert copy.is_file()
