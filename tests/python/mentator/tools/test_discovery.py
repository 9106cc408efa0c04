"""Tool and tool-env discovery (reference §5.1-5.2): names, lookup, every invalid-file message."""

from __future__ import annotations

import json
from pathlib import Path

from mentator.tools.registry import ENV_PIPE, TOOL_PIPE, ToolRegistry
from mentator_testing.recording_logger import RecordingLogger

SPEC = '{"type": "object", "description": "adds", "properties": {"a": {"type": "number"}}}'


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_valid_tools_names_and_lookup(tmp_path: Path) -> None:
    tools, envs = tmp_path / "tools", tmp_path / "envs"
    _write(tools, "Math.tool.txt", f"ignored line\n$$spec\n{SPEC}\n$$code=PY\nreturn args\n")
    _write(tools, "sub/Math.tool.txt", f"$$spec\n{SPEC}\n$$code=JS\nreturn 1\n")
    _write(tools, "empty.tool.txt", "")
    _write(tools, "other.txt", f"$$spec\n{SPEC}\n$$code=PY\nreturn 1\n")
    _write(envs, "Conn.toolenv.txt", '{"password": "s3cret"}')
    logger = RecordingLogger()
    registry = ToolRegistry(tools, envs, logger)
    registry.rescan()
    assert [tool.name for tool in registry.tools()] == ["Math.tool.txt", "Math.tool.txt (sub)"]
    first = registry.find_tool("math")
    assert first is not None and first.lang == "PY" and first.code == "return args"
    assert first.description == "adds"
    assert registry.find_tool("MATH.TOOL.TXT") is first
    assert registry.find_tool("math.tool.txt (sub)") is not None
    assert registry.find_tool("nothing") is None
    env = registry.find_env("conn")
    assert env is not None and env.value == {"password": "s3cret"}
    assert (
        "debug",
        TOOL_PIPE,
        'add tool(s): "Math.tool.txt", "Math.tool.txt (sub)";',
    ) in logger.lines
    assert ("debug", ENV_PIPE, 'add toolenv(s): "Conn.toolenv.txt";') in logger.lines
    # A later section of the same kind replaces the earlier one; sections are trimmed.
    _write(
        tools, "Math.tool.txt", f"$$spec\n{SPEC}\n$$code=PY\nreturn 1\n$$code=PY\n\n  return 2 \n"
    )
    (tools / "sub" / "Math.tool.txt").unlink()
    registry.rescan()
    again = registry.find_tool("math")
    assert again is not None and again.code == "return 2"
    assert ("debug", TOOL_PIPE, 'remove tool(s): "Math.tool.txt (sub)";') in logger.lines


def test_every_invalid_tool_file_is_reported(tmp_path: Path) -> None:
    tools, envs = tmp_path / "tools", tmp_path / "envs"
    cases = {
        "nospec.tool.txt": (
            "$$code=PY\nreturn 1\n",
            'tool "nospec.tool.txt": missing $$spec section',
        ),
        "badjson.tool.txt": (
            "$$spec\n{nope\n$$code=PY\nreturn 1\n",
            'tool "badjson.tool.txt": invalid $$spec - Expecting property name enclosed in double '
            "quotes: line 1 column 2 (char 1)",
        ),
        "array.tool.txt": (
            "$$spec\n[1]\n$$code=PY\nreturn 1\n",
            'tool "array.tool.txt": invalid $$spec - tool spec must be a JSON object',
        ),
        "string.tool.txt": (
            '$$spec\n{"type": "string"}\n$$code=PY\nreturn 1\n',
            'tool "string.tool.txt": invalid $$spec - tool spec root type must be "object"',
        ),
        "schema.tool.txt": (
            '$$spec\n{"type": "object", "properties": {"a": {"type": 5}}}\n$$code=PY\nreturn 1\n',
            'tool "schema.tool.txt": invalid $$spec - schema/properties/a/type 5 is not valid',
        ),
        "nocode.tool.txt": (f"$$spec\n{SPEC}\n", 'tool "nocode.tool.txt": missing $$code section'),
        "lang.tool.txt": (
            f"$$spec\n{SPEC}\n$$code=RUBY\nputs 1\n",
            'tool "lang.tool.txt": unknown lang "RUBY"',
        ),
        "emptycode.tool.txt": (
            f"$$spec\n{SPEC}\n$$code=PY\n   \n",
            'tool "emptycode.tool.txt": $$code==PY section is empty',
        ),
    }
    for name, (text, _message) in cases.items():
        _write(tools, name, text)
    _write(envs, "broken.toolenv.txt", '{"password": s3cret}')
    logger = RecordingLogger()
    registry = ToolRegistry(tools, envs, logger)
    registry.rescan()
    assert registry.tools() == []
    errors = logger.messages("error")
    for name, (_text, message) in cases.items():
        found = [line for line in errors if line.startswith(f'tool "{name}"')]
        assert len(found) == 1, (name, errors)
        assert found[0].startswith(message), (found[0], message)
    env_errors = [line for line in errors if line.startswith("env tool")]
    assert env_errors == [
        'env tool "broken.toolenv.txt": SyntaxError: Expecting value at line 1 column 14'
    ]
    assert "s3cret" not in "\n".join(errors)  # a secret never reaches a log line
    # Logged once, not again every scan while the file is unchanged.
    registry.rescan()
    assert len(logger.messages("error")) == len(errors)


def test_missing_tool_dir_is_an_error_not_a_crash(tmp_path: Path) -> None:
    logger = RecordingLogger()
    registry = ToolRegistry(tmp_path / "absent", None, logger)
    registry.rescan()
    assert registry.tools() == []
    assert any("on read dir" in line for line in logger.messages("error"))
    unconfigured = ToolRegistry(None, None, logger)
    unconfigured.rescan()
    assert not unconfigured.configured and unconfigured.tools() == []


def test_a_later_spec_section_replaces_an_earlier_one(tmp_path: Path) -> None:
    """Reference §5.1: "a later section of the same kind replaces an earlier one" - for
    ``$$spec`` too, wherever the later one stands (after the code, even). The first spec is
    invalid here, so keeping it would skip the tool with an error."""
    tools = tmp_path / "tools"
    later = '{"type": "object", "description": "the later spec"}'
    _write(
        tools,
        "twice.tool.txt",
        f'$$spec\n{{"type": "string"}}\n$$code=PY\nreturn 1\n$$spec\n  {later}  \n',
    )
    logger = RecordingLogger()
    registry = ToolRegistry(tools, None, logger)
    registry.rescan()
    tool = registry.find_tool("twice")
    assert logger.messages("error") == []
    assert tool is not None and tool.spec == json.loads(later) and tool.code == "return 1"
    assert tool.description == "the later spec"
