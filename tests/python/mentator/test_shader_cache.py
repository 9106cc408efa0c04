"""GPU drivers' compiled shaders are kept in the data folder (`server.keep_shader_cache`): the
image's service user has no writable home, so Mesa's default cache never worked and every start
compiled every shader again (lavapipe: the Vulkan engine's start 6.7 s, 1.4 s with the cache)."""

from __future__ import annotations

from pathlib import Path

from mentator import server
from mentator_testing.fake_engine import build_settings


def test_the_shader_cache_goes_beside_the_database(tmp_path: Path) -> None:
    settings = build_settings(tmp_path)
    environ: dict[str, str] = {}
    server.keep_shader_cache(settings, environ)
    assert environ == {"MESA_SHADER_CACHE_DIR": str(settings.db_file.parent / "shader-cache")}


def test_an_operators_own_shader_cache_setting_is_kept(tmp_path: Path) -> None:
    environ = {"MESA_SHADER_CACHE_DIR": "/elsewhere"}
    server.keep_shader_cache(build_settings(tmp_path), environ)
    assert environ == {"MESA_SHADER_CACHE_DIR": "/elsewhere"}
