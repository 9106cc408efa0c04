"""PY tools in their own process: result, errors, limits, and what the child can see."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mentator.tools.execution import Limits, ToolRunError, python_source, run_tool
from mentator.tools.files import ToolFile


def _tool(code: str, lang: str = "PY") -> ToolFile:
    return ToolFile("t.tool.txt", "t.tool.txt", Path("t.tool.txt"), {"type": "object"}, lang, code)


def _run(
    code: str,
    args: Any = None,
    env: dict[str, Any] | None = None,
    lang: str = "PY",
    **limits: Any,
) -> Any:
    options = {"timeout_s": 10.0, **limits}
    return asyncio.run(run_tool(_tool(code, lang), args or {}, env or {}, Limits(**options)))


def test_result_args_env_and_lib() -> None:
    code = (
        'x = args["a"] + args["b"]\n'
        'return {"sum": x, "pw": {{ conn }}["password"], "pi": LIB.math.pi > 3}'
    )
    assert _run(code, {"a": 2, "b": 3}, {"conn": {"password": "p"}}) == {
        "sum": 5,
        "pw": "p",
        "pi": True,
    }
    assert python_source(_tool('s = "{{conn}}"')) == 's = "ENV["conn"]"'
    # Prints go to stderr, never into the answer.
    assert _run('print("noise")\nreturn "ok"') == "ok"


def test_failures_are_clear() -> None:
    with pytest.raises(ToolRunError, match=r"ZeroDivisionError: division by zero \(line 2\)"):
        _run("x = 1\nreturn x / 0")
    with pytest.raises(ToolRunError, match=r"timed out after 1000 ms"):
        _run("import time\ntime.sleep(30)", timeout_s=1.0)
    with pytest.raises(ToolRunError, match=r"wrote more than 1048576 bytes"):
        _run('print("x" * 10_000_000)\nreturn 1')
    with pytest.raises(ToolRunError, match=r"KeyError: 'missing'"):
        _run('return ENV["missing"]')
    with pytest.raises(ToolRunError, match="database connectors are not available"):
        _run("return LIB.db.pg")
    with pytest.raises(ToolRunError, match="MemoryError"):
        _run('x = "x" * (2 * 1024 * 1024 * 1024)\nreturn 1')


def test_child_sees_nothing_of_the_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MENTATOR_SECRET_PROBE", "do-not-leak")
    seen = _run(
        "import os, sys\n"
        "return {'env': dict(os.environ), 'cwd': os.getcwd(), 'path': sys.path,"
        " 'mods': [m for m in sys.modules if m.startswith('mentator')]}"
    )
    assert set(seen["env"]) <= {"PATH", "LANG", "HOME", "LC_CTYPE"}
    assert "do-not-leak" not in json.dumps(seen)
    assert seen["cwd"].startswith(os.path.realpath("/tmp")) or "mentator-tool-" in seen["cwd"]
    assert seen["mods"] == []
    assert not any("mentator" in entry and "site-packages" not in entry for entry in seen["path"])


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@needs_node
def test_js_tool_like_the_original() -> None:
    code = (
        "console.log('noise');\n"
        "const h = LIB.crypto.createHash('sha256').update('x').digest('hex').length;\n"
        "return {sum: args.a + args.b, pw: {{ conn }}.password, h, max: LIB.math.max(1, 2)};"
    )
    assert _run(code, {"a": 2, "b": 3}, {"conn": {"password": "p"}}, "JS") == {
        "sum": 5,
        "pw": "p",
        "h": 64,
        "max": 2,
    }
    assert _run("return await Promise.resolve(7);", lang="JS") == 7
    with pytest.raises(ToolRunError, match="Error: no luck"):
        _run("throw new Error('no luck');", lang="JS")
    with pytest.raises(ToolRunError, match="database connectors are not available"):
        _run("return LIB.db.pg;", lang="JS")
    with pytest.raises(ToolRunError, match="timed out after 1000 ms"):
        _run("await new Promise((r) => setTimeout(r, 30000));", lang="JS", timeout_s=1.0)
    with pytest.raises(ToolRunError, match="wrote more than"):
        _run("console.log('x'.repeat(10000000)); return 1;", lang="JS")
    seen = _run("return Object.keys(process.env);", lang="JS")
    assert set(seen) <= {"PATH", "LANG", "HOME"}


@needs_node
def test_lib_db_says_the_same_true_thing_in_js_and_py() -> None:
    # Neither runner ships a database connector: neither message may send the user to the other
    # language (the JS one once said "write the tool in PY", whose LIB.db fails the same way).
    said = []
    for lang, code in (("PY", "return LIB.db.pg"), ("JS", "return LIB.db.pg;")):
        with pytest.raises(ToolRunError) as caught:
            _run(code, lang=lang)
        said.append(str(caught.value))
    for text in said:
        assert "LIB.db.pg: database connectors are not available in this service" in text, text
        assert "PY" not in text and "JS" not in text, text


def test_js_without_node_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ToolRunError, match=r"Node.js \(node\) is not installed"):
        _run("return 1;", lang="JS")


@pytest.mark.parametrize("with_prlimit", [True, False])
def test_limits_hold_with_and_without_prlimit(
    monkeypatch: pytest.MonkeyPatch, with_prlimit: bool
) -> None:
    if with_prlimit and shutil.which("prlimit") is None:
        pytest.skip("util-linux prlimit is not installed")
    if not with_prlimit:
        real_which = shutil.which
        monkeypatch.setattr(
            shutil, "which", lambda name: None if name == "prlimit" else real_which(name)
        )
    seen = _run(
        "import resource as r\n"
        "kinds = (r.RLIMIT_CPU, r.RLIMIT_AS, r.RLIMIT_FSIZE, r.RLIMIT_NOFILE)\n"
        "return [r.getrlimit(k) for k in kinds]",
        timeout_s=5.0,
    )
    assert seen == [[6, 6], [2**30, 2**30], [64 * 2**20, 64 * 2**20], [256, 256]]
