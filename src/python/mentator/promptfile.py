"""The "prompt file" text format of ``/helper/prompt/fromstring`` / ``tostring`` (reference §2.7).

A file holds blocks between ``$$begin`` and ``$$end`` lines. Inside a block, a line with a section
marker starts a section that runs to the next marker::

    $$begin
    $$llm                 url=..., model=..., gpulayer=...      (key=value lines)
    $$options             generation options                     (key=value lines)
    $$system              system prompt
    $$user                user prompt (a block without one is dropped)
    $$jsonresponse        JSON Schema text, kept as text
    $$segment=<name>      any named text
    $$tool                JSON array of {"name", "spec"?} tool descriptions
    $$tool=<lang>=<name>  code of the tool <name> (attached to the $$tool entry with a spec)
    $$end

Text outside blocks is ignored and section content is trimmed. The result keeps the key order in
which the sections appeared, like the original (a JavaScript object).

Deliberate differences from the original library (``vv-ai-prompt-format``):
* a value is a number only when the whole text is a number (JavaScript's ``parseFloat`` read
  ``3b-model`` as ``3``); ``1.0`` is still read as ``1`` like JavaScript would;
* ``$$llm`` ``url`` and ``model`` keep their text as written (``model=7`` stays ``"7"``), and a
  non-numeric ``gpulayer`` is dropped instead of becoming ``null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mentator.config.options import JSON_DEFAULTS, parse_options

_TOOL_CODE_MARKER = re.compile(r"^\$\$tool=([^=]+)=(.+)$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_PLAIN_SECTIONS = {
    "$$system": "system",
    "$$user": "user",
    "$$options": "options",
    "$$llm": "llm",
    "$$jsonresponse": "jsonresponse",
    "$$tool": "tool",
}

Prompt = dict[str, Any]


class PromptFormatError(ValueError):
    """``format_prompt_file`` got something that is not a list of prompt objects."""


# ---------------------------------------------------------------- values of key=value lines


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _number(text: str) -> int | float | None:
    candidate = text.replace(",", ".", 1)  # "0,7" is 0.7 (only the first comma, as the original)
    if not _NUMBER.match(candidate):
        return None
    value = float(candidate)
    if not math.isfinite(value):
        return None
    # JavaScript has one number type: "4096" and "1.0" both print as integers there.
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def parse_option_value(text: str) -> object:
    """One ``key=value`` value: JSON for ``[``/``{``, number, ``true/false/y/n``, else string.

    Returns ``None`` for an empty value (the key is then treated as absent).
    """
    if text == "":
        return None
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, (list, dict)):
            return parsed
    clean = _unquote(text)
    number = _number(clean)
    if number is not None:
        return number
    lowered = clean.lower()
    if lowered in ("true", "y"):
        return True
    if lowered in ("false", "n"):
        return False
    return clean


def _key_values(content: str, *, raw: bool = False) -> dict[str, object]:
    """``key=value`` lines to a dict; lines without ``=`` or with an empty key are skipped."""
    values: dict[str, object] = {}
    for line in content.split("\n"):
        stripped = line.strip()
        equals = stripped.find("=")
        if equals <= 0:
            continue
        key = stripped[:equals].strip()
        text = stripped[equals + 1 :].strip()
        if text == "":
            continue
        values[key] = _unquote(text) if raw else parse_option_value(text)
    return values


def _llm_section(content: str) -> dict[str, object] | None:
    texts = _key_values(content, raw=True)
    llm: dict[str, object] = {}
    for key in ("url", "model"):
        text = texts.get(key)
        if isinstance(text, str) and text:
            llm[key] = text
    gpulayer_text = texts.get("gpulayer")
    if isinstance(gpulayer_text, str):
        gpulayer = _number(gpulayer_text)
        if gpulayer is not None:
            llm["gpulayer"] = gpulayer
    return llm or None


# ---------------------------------------------------------------- parsing


class _BlockBuilder:
    """Collects the sections of one ``$$begin`` … ``$$end`` block."""

    def __init__(self) -> None:
        self.prompt: Prompt = {}
        self._section: str | None = None
        self._segment_name = ""
        self._tool_lang = ""
        self._tool_name = ""
        self._lines: list[str] = []
        self._tool_codes: list[tuple[str, str, str]] = []  # (name, lang, code)

    def start(
        self, section: str, *, segment: str = "", tool_lang: str = "", tool_name: str = ""
    ) -> None:
        self.flush()
        self._section = section
        self._segment_name = segment
        self._tool_lang = tool_lang
        self._tool_name = tool_name
        self._lines = []

    def add_line(self, line: str) -> None:
        if self._section is not None:
            self._lines.append(line)

    def flush(self) -> None:
        """Store the current section (a section with no lines at all changes nothing)."""
        if self._section is None or not self._lines:
            return
        content = "\n".join(self._lines).strip()
        section = self._section
        if section == "toolcode":
            self._tool_codes.append((self._tool_name, self._tool_lang, content))
        elif section in ("system", "user", "jsonresponse"):
            self.prompt[section] = content
        elif section == "segment":
            if self._segment_name:
                self.prompt.setdefault("segment", {})[self._segment_name] = content
        elif section == "options":
            self.prompt["options"] = parse_options(
                _key_values(content), fill=False, defaults=JSON_DEFAULTS
            )
        elif section == "llm":
            llm = _llm_section(content)
            if llm is not None:
                self.prompt["llm"] = llm
        elif section == "tool":
            try:
                tools = json.loads(content)
            except ValueError:
                tools = None  # the original ignores a $$tool section that is not JSON
            if isinstance(tools, list):
                self.prompt["tool"] = tools

    def finish(self) -> Prompt | None:
        """The block's prompt, or ``None`` when it has no user text."""
        self.flush()
        if not self.prompt.get("user"):
            return None
        tools = self.prompt.get("tool")
        if isinstance(tools, list):
            for name, lang, code in self._tool_codes:
                for tool in tools:
                    if isinstance(tool, dict) and tool.get("name") == name and "spec" in tool:
                        tool["lang"] = lang
                        tool["code"] = code
                        break
        return self.prompt


def parse_prompt_file(text: str) -> list[Prompt]:
    """All prompts of a prompt file, in file order (see the module docstring for the format)."""
    prompts: list[Prompt] = []
    block: _BlockBuilder | None = None

    def close_block() -> None:
        if block is not None:
            prompt = block.finish()
            if prompt is not None:
                prompts.append(prompt)

    for line in text.split("\n"):
        marker = line.strip()
        if marker == "$$begin":
            close_block()
            block = _BlockBuilder()
            continue
        if marker == "$$end":
            close_block()
            block = None
            continue
        if block is None:
            continue
        if marker in _PLAIN_SECTIONS:
            block.start(_PLAIN_SECTIONS[marker])
        elif marker.startswith("$$segment="):
            block.start("segment", segment=marker[len("$$segment=") :].strip())
        elif tool_code := _TOOL_CODE_MARKER.match(marker):
            block.start("toolcode", tool_lang=tool_code.group(1), tool_name=tool_code.group(2))
        else:
            block.add_line(line)
    close_block()
    return prompts


# ---------------------------------------------------------------- formatting


def _js_text(value: object) -> str:
    """A value as JavaScript's template string would print it (``true``, ``0.5``, ``5``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, dict)):
        return _compact_json(value)
    return str(value)


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _format_one(prompt: Mapping[str, Any], lines: list[str]) -> None:
    lines.append("$$begin")
    llm = prompt.get("llm")
    if isinstance(llm, Mapping) and llm:
        lines.append("$$llm")
        for key in ("url", "model", "gpulayer"):
            if llm.get(key) is not None:
                lines.append(f"{key}={_js_text(llm[key])}")
    options = prompt.get("options")
    if isinstance(options, Mapping):
        lines.append("$$options")
        lines.extend(f"{key}={_js_text(value)}" for key, value in options.items())
    if prompt.get("system"):
        lines.extend(["$$system", str(prompt["system"])])
    lines.extend(["$$user", _js_text(prompt.get("user"))])
    if prompt.get("jsonresponse"):
        lines.extend(["$$jsonresponse", _js_text(prompt["jsonresponse"])])
    segments = prompt.get("segment")
    if isinstance(segments, Mapping):
        for name, content in segments.items():
            lines.extend([f"$$segment={name}", _js_text(content)])
    tools = prompt.get("tool")
    if isinstance(tools, Sequence) and not isinstance(tools, str) and tools:
        descriptions = []
        for tool in tools:
            if isinstance(tool, Mapping):
                entry: dict[str, object] = {"name": tool.get("name")}
                if tool.get("spec") is not None:
                    entry["spec"] = tool["spec"]
                descriptions.append(entry)
        lines.extend(["$$tool", _compact_json(descriptions)])
        for tool in tools:
            if isinstance(tool, Mapping) and tool.get("lang") and tool.get("code") is not None:
                lines.extend([f"$$tool={tool['lang']}={tool.get('name')}", _js_text(tool["code"])])
    lines.append("$$end")


def format_prompt_file(prompts: Sequence[object]) -> str:
    """The prompt-file text for ``prompts``: lines joined with ``\\n``, no trailing newline."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise PromptFormatError("prompts must be an array of prompt objects")
    lines: list[str] = []
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, Mapping):
            raise PromptFormatError(
                f"prompts[{index}] must be an object, got {type(prompt).__name__}"
            )
        _format_one(prompt, lines)
    return "\n".join(lines)
