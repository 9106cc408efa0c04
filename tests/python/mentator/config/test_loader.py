"""Config files: template, --conf-use checks and messages, --conf-docker creation/completion."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from mentator.config.jsonc import parse_jsonc
from mentator.config.loader import ConfigError, generate_template, load_docker, load_use
from mentator.config.options import JSON_DEFAULTS, OPTION_KEYS
from mentator.config.template import TEMPLATE_FILE_NAME, docker_template_text

VALID = """{
    "port": 8080,
    "modelDir": "models",
    "dbFile": "data/x.db",
    "defaultOptions": {"temperature": 0.5},
    "log": {"level": "trace", "liveDay": 7, "savePrompt": true}
}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def only_insertions(before: str, after: str) -> bool:
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes())


# --- template --------------------------------------------------------------------------------


def test_generate_template_creates_folder_and_every_key(tmp_path: Path) -> None:
    created = generate_template(tmp_path / "new" / "dir")
    assert created == tmp_path / "new" / "dir" / TEMPLATE_FILE_NAME
    text = created.read_text(encoding="utf-8")
    data = parse_jsonc(text)
    assert isinstance(data, dict)
    assert set(data) == {
        "port", "host", "modelDir", "dbFile", "toolDir", "toolEnvDir", "toolTimeoutMsec",
        "engineDir", "backend", "parallel", "queueLimit", "maxLoadedModels", "memoryBudgetMb",
        "vramBudgetMb", "keepAliveSec", "swapGrouping", "warmSwapMb",
        "pinnedModels", "drainGraceMsec", "drainNoticeMsec", "compactJson", "grammarRepeatPenalty",
        "cancelOnDisconnect", "grammarDry", "cutOffRetry",
        "threads", "apiKeys", "shadowUrl", "shadowPercent", "shadowQueue", "shadowApiKey",
        "defaultOptions", "log",
    }  # fmt: skip
    assert list(data["defaultOptions"]) == list(OPTION_KEYS)
    assert data["log"] == {"level": "debug", "liveDay": 30, "savePrompt": False}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith('"'):
            assert lines[index - 1].lstrip().startswith("//"), f"no comment above {line!r}"
            indent = len(line) - len(line.lstrip())
            assert indent % 4 == 0 and indent > 0


def test_template_loads_as_is(tmp_path: Path) -> None:
    created = generate_template(tmp_path)
    before = created.read_bytes()
    settings = load_use(created, environ={}, cwd=tmp_path)
    assert settings.port == 19777 and settings.host == "0.0.0.0"
    assert settings.model_dir == tmp_path / "path/to/models"
    assert settings.db_file == tmp_path / "path/to/mentator-llm-service.db"
    assert (
        settings.tool_dir is None and settings.tool_env_dir is None and settings.engine_dir is None
    )
    assert settings.parallel == 4 and settings.queue_limit == 64 and settings.threads is None
    assert settings.default_options == dict(JSON_DEFAULTS)
    assert (
        settings.log.level == "debug"
        and settings.log.live_day == 30
        and not settings.log.save_prompt
    )
    assert settings.mode == "use" and settings.config_file == created
    assert settings.warnings == ()
    assert created.read_bytes() == before


def test_generate_template_unwritable_target(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "x")
    with pytest.raises(ConfigError, match="cannot write the template"):
        generate_template(blocker / "sub")


# --- --conf-use ------------------------------------------------------------------------------


def test_load_use_valid_file_is_not_rewritten(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonc", "// my comment\n" + VALID)
    before = path.read_bytes()
    settings = load_use(path, environ={}, cwd=tmp_path)
    assert path.read_bytes() == before
    assert settings.port == 8080
    assert settings.model_dir == tmp_path / "models"
    assert settings.default_options["temperature"] == 0.5
    assert settings.default_options["maxTokens"] == 4096
    assert settings.log.level == "trace" and settings.log.live_day == 7 and settings.log.save_prompt


def test_load_use_error_message_names_file_key_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonc", VALID.replace('"liveDay": 7', '"liveDay": "abc"'))
    with pytest.raises(ConfigError) as caught:
        load_use(path, environ={})
    assert (
        str(caught.value)
        == f'config "{path}": key "log.liveDay": expected an integer 1..365, got "abc"'
    )


def test_load_use_lists_every_problem(tmp_path: Path) -> None:
    text = """{
        "port": 70000,
        "dbFile": 5,
        "parallel": 0,
        "defaultOptions": {"temperature": 5, "stopSequences": [1], "topK": "x"},
        "log": {"level": "info", "liveDay": 0}
    }"""
    path = write(tmp_path / "x.jsonc", text)
    with pytest.raises(ConfigError) as caught:
        load_use(path, environ={})
    problems = caught.value.problems
    expected = [
        'key "modelDir": missing',
        'key "port": expected an integer 1..65535, got 70000',
        'key "dbFile": expected a non-empty string, got 5',
        'key "parallel": expected an integer 1..64, got 0',
        'key "defaultOptions.temperature": expected a number 0..2, got 5',
        'key "defaultOptions.stopSequences.0": expected an array of strings',
        'key "defaultOptions.topK": expected an integer 1..1000, got "x"',
        'key "log.savePrompt": missing',
        'key "log.level": expected "error" or "debug" or "trace", got "info"',
        'key "log.liveDay": expected an integer 1..365, got 0',
    ]
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)
    assert len(problems) == len(expected)
    assert all(line.startswith(f'config "{path}": ') for line in str(caught.value).splitlines())


def test_load_use_accepts_null_optionals_and_warns_on_unknown(tmp_path: Path) -> None:
    text = VALID.replace(
        '"port": 8080,',
        '"port": 8080, "toolDir": null, "toolEnvDir": "envs", "threads": null, "extra": 1,',
    ).replace('{"temperature": 0.5}', '{"seed": null, "temperature": null, "bogus": 1}')
    settings = load_use(write(tmp_path / "c.jsonc", text), environ={}, cwd=tmp_path)
    assert settings.tool_dir is None and settings.tool_env_dir == tmp_path / "envs"
    assert "seed" not in settings.default_options
    assert settings.default_options["temperature"] == 0
    assert any('"extra"' in warning for warning in settings.warnings)
    assert any('"defaultOptions.bogus"' in warning for warning in settings.warnings)


def test_load_use_seed_and_engine_dir(tmp_path: Path) -> None:
    text = VALID.replace('"port": 8080,', '"port": 8080, "engineDir": "eng",').replace(
        '{"temperature": 0.5}', '{"seed": 42}'
    )
    path = write(tmp_path / "c.jsonc", text)
    settings = load_use(path, environ={}, cwd=tmp_path)
    assert settings.default_options["seed"] == 42
    assert settings.engine_dir == tmp_path / "eng"
    from_env = load_use(
        path, environ={"MENTATOR_ENGINE_DIR": str(tmp_path / "env-engine")}, cwd=tmp_path
    )
    assert from_env.engine_dir == tmp_path / "env-engine"


def test_load_use_missing_required_and_null_required(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonc", '{"port": null, "log": {}}')
    with pytest.raises(ConfigError) as caught:
        load_use(path, environ={})
    keys = " ".join(caught.value.problems)
    for key in (
        "port",
        "modelDir",
        "dbFile",
        "defaultOptions",
        "log.level",
        "log.liveDay",
        "log.savePrompt",
    ):
        assert f'key "{key}": missing' in keys


def test_load_use_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found; create one with --conf-gen"):
        load_use(tmp_path / "nope.jsonc")
    with pytest.raises(ConfigError, match=r"not valid JSON with comments: .* line 2"):
        load_use(write(tmp_path / "bad.jsonc", '{"port": 1,\n "x": }'))
    with pytest.raises(ConfigError, match="expected an object"):
        load_use(write(tmp_path / "arr.jsonc", "[1]"))


# --- --conf-docker ---------------------------------------------------------------------------


def test_docker_creates_file_from_template(tmp_path: Path) -> None:
    path = tmp_path / "data" / "mentator-llm-service.conf.jsonc"
    settings = load_docker(
        path, data_root=tmp_path / "data", environ={"MENTATOR_ENGINE_DIR": "/opt/engine"}
    )
    assert path.read_text(encoding="utf-8") == docker_template_text()
    data = parse_jsonc(docker_template_text())
    assert isinstance(data, dict)
    assert set(data) == {
        "toolTimeoutMsec", "backend", "parallel", "queueLimit", "maxLoadedModels", "memoryBudgetMb",
        "vramBudgetMb", "keepAliveSec", "swapGrouping", "warmSwapMb",
        "pinnedModels", "drainGraceMsec", "drainNoticeMsec", "compactJson", "grammarRepeatPenalty",
        "cancelOnDisconnect", "grammarDry", "cutOffRetry",
        "threads", "apiKeys", "shadowUrl", "shadowPercent", "shadowQueue", "shadowApiKey",
        "defaultOptions", "log",
    }  # fmt: skip
    assert data["apiKeys"] == []
    assert settings.port == 19777 and settings.host == "0.0.0.0" and settings.mode == "docker"
    assert settings.model_dir == tmp_path / "data" / "models"
    assert settings.db_file == tmp_path / "data" / "mentator-llm-service.db"
    assert settings.tool_dir == tmp_path / "data" / "tools"
    assert settings.tool_env_dir == tmp_path / "data" / "toolsenv"
    assert settings.engine_dir == Path("/opt/engine")
    assert settings.default_options == dict(JSON_DEFAULTS)
    # a second start with the complete file changes nothing
    before = path.read_bytes()
    load_docker(path, data_root=tmp_path / "data", environ={})
    assert path.read_bytes() == before


def test_docker_inserts_missing_keys_preserving_user_bytes(tmp_path: Path) -> None:
    original = (
        "// my own header comment\n"
        "{\n"
        "    /* keep this block comment */\n"
        '    "defaultOptions": {\n'
        '        "temperature": 0.7, // warm\n'
        '        "myUnknownOption": "x"\n'
        "    },\n"
        '    "mySetting": {"nested": [1, 2, 3]},\n'
        '    "log": { "level": "trace" }\n'
        "}\n"
        "// trailing comment\n"
    )
    path = write(tmp_path / "conf.jsonc", original)
    settings = load_docker(path, data_root=tmp_path, environ={})
    updated = path.read_text(encoding="utf-8")
    assert only_insertions(original, updated)
    data = parse_jsonc(updated)
    assert isinstance(data, dict)
    assert data["mySetting"] == {"nested": [1, 2, 3]}
    assert data["defaultOptions"]["temperature"] == 0.7
    assert data["defaultOptions"]["myUnknownOption"] == "x"
    assert set(OPTION_KEYS) <= set(data["defaultOptions"])  # nested keys went inside defaultOptions
    assert data["log"] == {"level": "trace", "liveDay": 30, "savePrompt": False}
    assert {"parallel", "queueLimit", "threads"} <= set(data)
    assert "// warm" in updated and "// trailing comment" in updated
    # inserted keys come with their comment line
    lines = updated.splitlines()
    index = next(i for i, line in enumerate(lines) if '"maxTokens"' in line)
    assert lines[index - 1].strip().startswith("// maximum number of generated tokens")
    assert settings.default_options["temperature"] == 0.7
    assert settings.log.level == "trace"
    assert any('"mySetting"' in warning for warning in settings.warnings)


def test_docker_forced_keys_have_no_effect(tmp_path: Path) -> None:
    text = docker_template_text().replace(
        "{\n",
        "{\n"
        '    "port": 8080,\n    "host": "127.0.0.1",\n    "modelDir": "/elsewhere",\n'
        '    "dbFile": "/tmp/other.db",\n    "toolDir": "/my/tools",\n'
        '    "toolEnvDir": "/my/env",\n    "engineDir": "/my/engine",\n',
        1,
    )
    path = write(tmp_path / "conf.jsonc", text)
    settings = load_docker(
        path, data_root=tmp_path / "data", environ={"MENTATOR_ENGINE_DIR": "/opt/engine"}
    )
    assert settings.port == 19777
    assert settings.host == "0.0.0.0"
    assert settings.model_dir == tmp_path / "data" / "models"
    assert settings.db_file == tmp_path / "data" / "mentator-llm-service.db"
    assert settings.tool_dir == tmp_path / "data" / "tools"
    assert settings.tool_env_dir == tmp_path / "data" / "toolsenv"
    assert settings.engine_dir == Path("/opt/engine")  # the image's variable, not the file
    for key in ("port", "host", "modelDir", "dbFile", "toolDir", "toolEnvDir", "engineDir"):
        assert any(
            f'key "{key}" has no effect in docker mode' in warning for warning in settings.warnings
        )
    assert path.read_text(encoding="utf-8") == text  # warnings do not edit the file


def test_docker_invalid_values_raise_and_leave_file_alone(tmp_path: Path) -> None:
    text = '{"defaultOptions": {"temperature": 5}, "log": {"level": "info"}}'
    path = write(tmp_path / "conf.jsonc", text)
    with pytest.raises(ConfigError) as caught:
        load_docker(path, data_root=tmp_path, environ={})
    assert len(caught.value.problems) == 2
    assert 'key "defaultOptions.temperature": expected a number 0..2, got 5' in str(caught.value)
    assert path.read_text(encoding="utf-8") == text


def test_docker_null_values_are_tolerated(tmp_path: Path) -> None:
    path = write(
        tmp_path / "conf.jsonc",
        '{"defaultOptions": {"seed": null, "topK": null}, "log": {"liveDay": null}}',
    )
    settings = load_docker(path, data_root=tmp_path, environ={})
    assert settings.default_options["topK"] == 10 and settings.log.live_day == 30


def test_docker_unwritable_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = write(tmp_path / "not-a-folder", "x")
    with pytest.raises(ConfigError, match=r"cannot create the docker config file: .*writable"):
        load_docker(blocker / "conf.jsonc", data_root=tmp_path, environ={})


def test_docker_write_refused_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs as root too (where file modes do not stop writes): the OS refusal is simulated.
    path = write(tmp_path / "conf.jsonc", "{}")

    def refuse(self: Path, data: bytes) -> int:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(
        ConfigError, match=r"cannot add the missing keys .*: Permission denied; make the file"
    ):
        load_docker(path, data_root=tmp_path, environ={})


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file modes")
def test_docker_read_only_file_needing_keys_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.jsonc", "{}")
    path.chmod(0o444)
    try:
        with pytest.raises(ConfigError, match="cannot add the missing keys"):
            load_docker(path, data_root=tmp_path, environ={})
    finally:
        path.chmod(0o644)


# --- API keys ----------------------------------------------------------------------------------


def test_api_keys_from_the_file_and_the_environment(tmp_path: Path) -> None:
    text = VALID.replace('"defaultOptions"', '"apiKeys": ["file-key"],\n    "defaultOptions"')
    path = write(tmp_path / "c.jsonc", text)
    assert load_use(path, environ={}, cwd=tmp_path).api_keys == ("file-key",)
    both = load_use(path, environ={"MENTATOR_API_KEYS": "env-1, env-2"}, cwd=tmp_path)
    assert both.api_keys == ("file-key", "env-1", "env-2")
    plain = write(tmp_path / "d.jsonc", VALID)
    assert load_use(plain, environ={}, cwd=tmp_path).api_keys == ()
    docker = load_docker(
        tmp_path / "docker.jsonc",
        data_root=tmp_path / "data",
        environ={"MENTATOR_ENGINE_DIR": "/opt/engine", "MENTATOR_API_KEYS": "k"},
    )
    assert docker.api_keys == ("k",)


@pytest.mark.parametrize("value", ['"secret-in-a-string"', '["ok", ""]', '["ok", 5]', "{}"])
def test_a_bad_api_keys_value_is_explained_without_echoing_it(tmp_path: Path, value: str) -> None:
    text = VALID.replace('"defaultOptions"', f'"apiKeys": {value},\n    "defaultOptions"')
    path = write(tmp_path / "c.jsonc", text)
    with pytest.raises(ConfigError) as caught:
        load_use(path, environ={})
    message = str(caught.value)
    assert 'key "apiKeys": expected a list of non-empty strings' in message
    assert "secret-in-a-string" not in message and '"ok"' not in message


def test_shadow_keys(tmp_path: Path) -> None:
    text = VALID.replace(
        '"port": 8080,',
        '"port": 8080, "shadowUrl": " http://10.0.0.2:19777/ ", "shadowPercent": 5,',
    )
    settings = load_use(write(tmp_path / "c.jsonc", text), environ={})
    assert settings.shadow_url == "http://10.0.0.2:19777"
    assert (settings.shadow_percent, settings.shadow_queue, settings.shadow_api_key) == (
        5,
        100,
        None,
    )
    assert load_use(write(tmp_path / "d.jsonc", VALID), environ={}).shadow_url is None  # off


@pytest.mark.parametrize(
    "url",
    ["ftp://host/", "10.0.0.2:19777", "http://", "http://h/?a=1", "http://u:p@h/", "http://h:x/"],
)
def test_a_shadow_url_that_is_not_a_service_url_is_refused(tmp_path: Path, url: str) -> None:
    text = VALID.replace(
        '"port": 8080,', f'"port": 8080, "shadowUrl": "{url}", "shadowPercent": 0,'
    )
    with pytest.raises(ConfigError) as caught:
        load_use(write(tmp_path / "c.jsonc", text), environ={})
    assert caught.value.problems == [
        f'key "shadowUrl": expected an http(s) URL with a host and no query, e.g.'
        f' "http://10.0.0.2:19777", got "{url}"',
        'key "shadowPercent": expected an integer 1..100, got 0',
    ]


def test_backend_key_accepts_auto_and_the_catalog_tiers(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(VALID.replace('"port": 8080,', '"port": 8080, "backend": "vulkan",'))
    assert load_use(path, environ={}).backend == "vulkan"
    path.write_text(VALID.replace('"port": 8080,', '"port": 8080, "backend": "metal",'))
    with pytest.raises(ConfigError) as raised:
        load_use(path, environ={})
    assert 'key "backend": expected "auto" or "cuda" or "rocm" or "vulkan" or "cpu"' in str(
        raised.value
    )
