from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mentator.schema.gbnf import schema_to_gbnf
from mentator.schema.pattern import PatternError, json_encoded, pattern_to_expr

GrammarFactory = Callable[[str], Any]


Verdict = Callable[[str, str], "bool | None"]


def accepts(gbnf: GrammarFactory, verdict: Verdict, pattern: str, json_text: str) -> bool:
    text = schema_to_gbnf({"type": "string", "pattern": pattern})
    ours = bool(gbnf(text).accepts(json_text))
    assert verdict(text, json_text) in (None, ours), f"llama.cpp disagrees on {json_text!r}\n{text}"
    return ours


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        ("^\\d+$", ['"0"', '"123"'], ['""', '"1a"']),
        ("^[^0-9]{2}$", ['"ab"', '"\\"a"', '"\\\\x"'], ['"a1"', '"abc"', '"\\""']),
        ("^(?:ab|cd)*$", ['""', '"abcd"', '"cdcdab"'], ['"abc"']),
        ("^a.c$", ['"abc"', '"a\\"c"'], ['"ac"']),
        ("^\\w+@\\w+\\.com$", ['"me@host.com"'], ['"me@host.org"']),
        ('^say "hi"$', ['"say \\"hi\\""'], ['"say "hi""']),
        ("^\\s?x$", ['"x"', '" x"', '"\\tx"'], ['"  x"']),
        ("^(?P<y>\\d{4})-(?<m>\\d{2})$", ['"2024-01"'], ['"24-01"']),
        ("^x{2,}?$", ['"xx"', '"xxxx"'], ['"x"']),
        ("^[a-c-]$", ['"-"', '"b"'], ['"d"']),
        ("^\\u00e9$", ['"é"'], ['"e"']),
    ],
)
def test_patterns(
    gbnf: GrammarFactory, llama_verdict: Verdict, pattern: str, good: list[str], bad: list[str]
) -> None:
    for text in good:
        assert accepts(gbnf, llama_verdict, pattern, text), (pattern, text)
    for text in bad:
        assert not accepts(gbnf, llama_verdict, pattern, text), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        "(?=x)",
        "(?!x)",
        "\\bword",
        "(a)\\1",
        "a^b",
        "a$b",
        "x++",
        "(ab",
        "[abc",
        "*a",
        "a{3,1}",
        "[z-a]",
    ],
)
def test_unsupported_patterns_raise(pattern: str) -> None:
    with pytest.raises(PatternError):
        pattern_to_expr(pattern)


def test_json_encoded() -> None:
    assert json_encoded('"') == '\\"'
    assert json_encoded("\x02") == "\\u0002"
    assert json_encoded("é") == "é"
