"""The child side of one PY tool call: ``python -I runner.py`` in a fresh process.

It imports nothing of the service (it is run as a script, so the child never sees the
service's modules or settings). stdin: one JSON object ``{"code", "args", "env"}``; stdout: one
JSON line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. What the tool
prints goes to stderr (the parent caps it). The code is the body of
``def tool(args, LIB, ENV)``; its return value is the result.
"""

from __future__ import annotations

import json
import sys
import textwrap
import traceback
from types import SimpleNamespace
from typing import Any


def _http() -> Any:
    try:
        import httpx
    except ImportError:
        return None

    def request(method: str, url: str, **options: Any) -> Any:
        timeout = options.pop("timeoutMsec", 60000) / 1000
        response = httpx.request(method, url, timeout=timeout, **options)
        try:
            return response.json()
        except ValueError:
            return response.text

    return SimpleNamespace(
        get=lambda url, **o: request("GET", url, **o),
        post=lambda url, body=None, **o: request(
            "POST", url, **({"json": body} if not isinstance(body, str) else {"content": body}), **o
        ),
        request=lambda url, method="GET", **o: request(method, url, **o),
    )


class _NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"LIB.db.{name}: database connectors are not available in this service")


class _Lib:
    """``LIB``: modules imported when first used (a call that needs no http pays no import)."""

    db = _NoDatabase()

    def __getattr__(self, name: str) -> Any:
        import base64
        import hashlib
        import math
        import os.path
        import pathlib

        modules: dict[str, Any] = {
            "math": math,
            "path": os.path,
            "fs": pathlib,
            "crypto": SimpleNamespace(hashlib=hashlib, base64=base64),
        }
        if name == "http":
            modules["http"] = _http()
        if name not in modules:
            raise AttributeError(f"LIB.{name} does not exist (LIB has {', '.join(modules)}, db)")
        value = modules[name]
        setattr(self, name, value)
        return value


def main() -> int:
    request = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # the tool's prints must not corrupt the answer line
    source = "def __tool__(args, LIB, ENV):\n" + textwrap.indent(request["code"], "    ") + "\n"
    try:
        namespace: dict[str, Any] = {"__name__": "__tool__"}
        exec(compile(source, "<tool>", "exec"), namespace)  # running tools is the point
        result = namespace["__tool__"](request["args"], _Lib(), request["env"])
        line = json.dumps({"ok": True, "result": result}, default=str)
    except BaseException as error:  # every failure is the tool's answer
        frames = traceback.extract_tb(error.__traceback__)
        where = next(
            (f" (line {(f.lineno or 1) - 1})" for f in reversed(frames) if f.filename == "<tool>"),
            "",
        )
        line = json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}{where}"})
    real_stdout.write(line + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
