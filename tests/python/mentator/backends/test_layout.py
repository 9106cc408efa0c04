"""The engine folder: the one engine-dir rule and the environment of a child."""

from __future__ import annotations

from pathlib import Path

from mentator.backends.layout import EngineLayout, child_environment, resolve_engine_dir


def test_the_variable_wins_over_the_configured_folder(tmp_path: Path) -> None:
    environ = {"MENTATOR_ENGINE_DIR": "/opt/engine"}
    assert resolve_engine_dir("eng", environ, tmp_path) == Path("/opt/engine")
    assert resolve_engine_dir("eng", {}, tmp_path) == tmp_path / "eng"
    assert resolve_engine_dir(str(tmp_path / "abs"), {}, Path("/elsewhere")) == tmp_path / "abs"
    assert resolve_engine_dir(None, {"MENTATOR_ENGINE_DIR": "  "}) is None


def test_a_cpu_child_gets_no_backend_variables(tmp_path: Path) -> None:
    layout = EngineLayout(tmp_path)
    assert layout.child_env("cpu", {"LD_LIBRARY_PATH": "/x"}) == {}
    cuda = layout.child_env("cuda", {"LD_LIBRARY_PATH": "/x"})
    assert cuda == {
        "GGML_BACKEND_PATH": str(tmp_path / "cuda" / "libggml-cuda.so"),
        "LD_LIBRARY_PATH": f"{tmp_path / 'cuda'}:{tmp_path}:/x",
    }


def test_child_environment_drops_what_would_steer_the_engine() -> None:
    base = {
        "PATH": "/bin",
        "GGML_BACKEND_PATH": "/elsewhere/libggml-cuda.so",
        "LLAMA_ARG_CTX_SIZE": "99",
        "LLAMA_API_KEY": "secret",
        "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
    }
    env = child_environment(base, {"LD_LIBRARY_PATH": "/engine/cuda"})
    assert env == {
        "PATH": "/bin",
        "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
        "LD_LIBRARY_PATH": "/engine/cuda",
    }
