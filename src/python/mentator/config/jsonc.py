"""JSONC reading, and insertion of missing keys that leaves every existing byte in place.

Parsing is `pyjson5` (JSON5 is a superset of JSONC: `//` and `/* */` comments, trailing
commas). Insertion needs to know *where* things are in the text, which no JSON parser reports, so
a small scanner below finds the byte spans of objects and their members; it is only run on text
that `pyjson5` already accepted, so it can assume valid syntax. Edits are pure insertions: the
user's comments, formatting and unknown keys survive untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyjson5


class JsoncError(ValueError):
    """The text is not valid JSONC; the message says where."""


@dataclass(frozen=True)
class NewMember:
    """A key to insert: `value` is a JSON value, or a tuple of NewMember for a commented object."""

    key: str
    value: object
    comment: str


@dataclass(frozen=True)
class Node:
    """Where one JSON value sits in the text: `[start, end)`; members only for objects."""

    kind: Literal["object", "array", "scalar"]
    start: int
    end: int
    members: tuple[Member, ...] = ()

    def member(self, key: str) -> Member | None:
        for item in self.members:
            if item.key == key:
                return item
        return None


@dataclass(frozen=True)
class Member:
    key: str
    key_start: int
    value: Node


def parse_jsonc(text: str) -> object:
    """Decode JSONC text; JsoncError names line and column of the problem."""
    try:
        return pyjson5.decode(text)
    except pyjson5.Json5Exception as err:
        raise JsoncError(_describe_decode_error(text, err)) from None


def _describe_decode_error(text: str, err: pyjson5.Json5Exception) -> str:
    message = str(err.args[0]) if err.args else str(err)
    # pyjson5 says "... near <offset>, ..."; turn the offset into line/column for humans.
    marker = " near "
    if marker in message:
        tail = message.split(marker, 1)[1]
        digits = "".join(ch for ch in tail.split(",", 1)[0] if ch.isdigit())
        if digits:
            offset = min(int(digits), len(text))
            line = text.count("\n", 0, offset) + 1
            column = offset - (text.rfind("\n", 0, offset) + 1) + 1
            return f"{message.split(marker, 1)[0]} at line {line}, column {column}"
    return message


# --- span scanner ----------------------------------------------------------------------------


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_trivia(self) -> None:
        """Skip whitespace (incl. a BOM) and comments."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\n\ufeff\u00a0\u2028\u2029\v\f":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline + 1
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                self.pos = len(text) if close < 0 else close + 2
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self) -> Node:
        self.skip_trivia()
        start = self.pos
        ch = self.peek()
        if ch == "{":
            return self._object(start)
        if ch == "[":
            self.pos += 1
            while True:
                self.skip_trivia()
                if self.peek() == "]":
                    self.pos += 1
                    return Node("array", start, self.pos)
                self.value()
                self.skip_trivia()
                if self.peek() == ",":
                    self.pos += 1
        if ch in "\"'":
            self._string()
            return Node("scalar", start, self.pos)
        # number, true/false/null, Infinity, NaN: run until a delimiter
        while self.pos < len(self.text) and self.text[self.pos] not in ",]}/ \t\r\n":
            self.pos += 1
        return Node("scalar", start, self.pos)

    def _object(self, start: int) -> Node:
        self.pos += 1
        members: list[Member] = []
        while True:
            self.skip_trivia()
            if self.peek() == "}":
                self.pos += 1
                return Node("object", start, self.pos, tuple(members))
            key_start = self.pos
            key = self._key()
            self.skip_trivia()
            self.pos += 1  # ':'
            members.append(Member(key, key_start, self.value()))
            self.skip_trivia()
            if self.peek() == ",":
                self.pos += 1

    def _key(self) -> str:
        if self.peek() in "\"'":
            start = self.pos
            self._string()
            decoded = pyjson5.decode(self.text[start : self.pos])
            return str(decoded)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ": \t\r\n/":
            self.pos += 1
        return self.text[start : self.pos]

    def _string(self) -> None:
        quote = self.text[self.pos]
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                return


def scan(text: str) -> Node:
    """Spans of the top-level value of (already validated) JSONC text."""
    return _Scanner(text).value()


# --- rendering and insertion -----------------------------------------------------------------


def render_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_members(members: Sequence[NewMember], indent: str, unit: str, newline: str) -> str:
    """Commented `"key": value` lines, each line ending with `newline`; no comma after the last."""
    parts: list[str] = []
    for index, member in enumerate(members):
        comma = "," if index < len(members) - 1 else ""
        for comment_line in member.comment.splitlines():
            parts.append(
                f"{indent}// {comment_line}{newline}" if comment_line else f"{indent}//{newline}"
            )
        key = json.dumps(member.key, ensure_ascii=False)
        if isinstance(member.value, tuple):
            children: tuple[NewMember, ...] = member.value
            inner = render_members(children, indent + unit, unit, newline)
            parts.append(f"{indent}{key}: {{{newline}{inner}{indent}}}{comma}{newline}")
        else:
            parts.append(f"{indent}{key}: {render_value(member.value)}{comma}{newline}")
    return "".join(parts)


def render_document(
    members: Sequence[NewMember], header: str, *, unit: str = "    ", newline: str = "\n"
) -> str:
    """A whole commented JSONC object (used for templates)."""
    head = "".join(
        f"// {line}{newline}" if line else f"//{newline}" for line in header.splitlines()
    )
    return f"{head}{{{newline}{render_members(members, unit, unit, newline)}}}{newline}"


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_indent(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _find_object(root: Node, path: Sequence[str]) -> Node:
    node = root
    for key in path:
        member = node.member(key)
        if member is None or member.value.kind != "object":
            raise KeyError(f"no object at {'.'.join(path)}")
        node = member.value
    if node.kind != "object":
        raise KeyError("the top-level value is not an object")
    return node


def insert_members(text: str, path: Sequence[str], members: Sequence[NewMember]) -> str:
    """Return `text` with `members` added at the end of the object at `path` (keys from root).

    Only insertions happen: a comma after the object's last member when it has none, then the
    new commented members before the closing brace, indented like their siblings.
    """
    if not members:
        return text
    node = _find_object(scan(text), path)
    newline = "\r\n" if "\r\n" in text else "\n"
    brace_indent = _line_indent(text, node.start)
    if node.members:
        first_key = node.members[0].key_start
        only_space_before = text[_line_start(text, first_key) : first_key].strip(" \t") == ""
        indent = _line_indent(text, first_key) if only_space_before else brace_indent + "    "
    else:
        indent = brace_indent + "    "
    unit = "\t" if indent.startswith("\t") else "    "
    block = render_members(members, indent, unit, newline)

    close = node.end - 1  # the '}'
    closing_line_start = _line_start(text, close)
    if text[closing_line_start:close].strip(" \t") == "":
        insert_at, insertion = closing_line_start, block
        if closing_line_start == 0 or text[closing_line_start - 1] != "\n":
            insertion = newline + block
    else:
        insert_at, insertion = close, newline + block + _line_indent(text, close)
    edited = text[:insert_at] + insertion + text[insert_at:]

    if node.members:
        last_end = node.members[-1].value.end
        probe = _Scanner(text)
        probe.pos = last_end
        probe.skip_trivia()
        if probe.peek() != ",":
            edited = edited[:last_end] + "," + edited[last_end:]
    return edited
