"""JSONC parsing and comment-preserving insertion."""

from __future__ import annotations

import difflib

import pytest

from mentator.config.jsonc import JsoncError, NewMember, insert_members, parse_jsonc, scan


def only_insertions(before: str, after: str) -> bool:
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes())


def test_parse_comments_and_trailing_commas() -> None:
    text = '// head\n{\n  "a": 1, /* b */\n  "c": [1, 2,],\n}\n'
    assert parse_jsonc(text) == {"a": 1, "c": [1, 2]}


def test_parse_error_names_line_and_column() -> None:
    with pytest.raises(JsoncError, match="line 3"):
        parse_jsonc('{\n  "a": 1,\n  "b": }\n')


def test_scan_finds_members_and_nested_objects() -> None:
    text = '{ "a": {"x": "}"}, // c\n b: [1, {"y": 2}], "c": \'s\' }'
    root = scan(text)
    assert [m.key for m in root.members] == ["a", "b", "c"]
    a = root.member("a")
    assert a is not None and a.value.kind == "object"
    assert text[a.value.start : a.value.end] == '{"x": "}"}'
    b = root.member("b")
    assert b is not None and text[b.value.start : b.value.end] == '[1, {"y": 2}]'


def test_insert_adds_comma_and_keeps_comment_after_last_member() -> None:
    text = '{\n    "a": 1 // keep me\n}\n'
    result = insert_members(text, (), [NewMember("b", [], "the b key")])
    assert result == '{\n    "a": 1, // keep me\n    // the b key\n    "b": []\n}\n'
    assert parse_jsonc(result) == {"a": 1, "b": []}


def test_insert_with_existing_trailing_comma_and_trailing_comment() -> None:
    text = '{\n\t"a": 1,\n\t// last words\n}'
    result = insert_members(text, (), [NewMember("b", None, "b"), NewMember("c", True, "c")])
    assert result == '{\n\t"a": 1,\n\t// last words\n\t// b\n\t"b": null,\n\t// c\n\t"c": true\n}'


def test_insert_into_one_line_and_empty_objects() -> None:
    assert (
        insert_members('{"a": 1}', (), [NewMember("b", 2, "x")])
        == '{"a": 1,\n    // x\n    "b": 2\n}'
    )
    assert insert_members("{}", (), [NewMember("b", 2, "x")]) == '{\n    // x\n    "b": 2\n}'


def test_insert_nested_object_uses_sibling_indent() -> None:
    text = '{\n  "log": {\n      "level": "trace"\n  },\n  "x": 1\n}\n'
    result = insert_members(text, ("log",), [NewMember("liveDay", 30, "days")])
    assert (
        result
        == '{\n  "log": {\n      "level": "trace",\n      // days\n      "liveDay": 30\n  },\n'
        '  "x": 1\n}\n'
    )
    assert only_insertions(text, result)


def test_insert_commented_object_value() -> None:
    members = (NewMember("level", "debug", "lvl"),)
    result = insert_members("{\n}\n", (), [NewMember("log", members, "log section")])
    assert (
        result == '{\n    // log section\n    "log": {\n        // lvl\n'
        '        "level": "debug"\n    }\n}\n'
    )


def test_insert_keeps_crlf() -> None:
    text = '{\r\n    "a": 1\r\n}\r\n'
    result = insert_members(text, (), [NewMember("b", 2, "b")])
    assert result == '{\r\n    "a": 1,\r\n    // b\r\n    "b": 2\r\n}\r\n'
