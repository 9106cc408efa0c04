from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from mentator.schema.gbnf import schema_to_gbnf
from mentator.schema.pattern import PatternError, json_encoded, pattern_to_expr

GrammarFactory = Callable[[str], Any]


# conftest.llama_grammar: (grammar, prompt) -> Generated(status, text, complete, error)
LlamaGrammar = Callable[[str, str], Any]


def accepts(gbnf: GrammarFactory, pattern: str, json_text: str) -> bool:
    text = schema_to_gbnf({"type": "string", "pattern": pattern})
    return bool(gbnf(text).accepts(json_text))


PATTERN_CASES = [
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
]


@pytest.mark.parametrize(("pattern", "good", "bad"), PATTERN_CASES)
def test_patterns(gbnf: GrammarFactory, pattern: str, good: list[str], bad: list[str]) -> None:
    for text in good:
        assert accepts(gbnf, pattern, text), (pattern, text)
    for text in bad:
        assert not accepts(gbnf, pattern, text), (pattern, text)


def test_llama_cpp_generates_inside_every_pattern_grammar(
    gbnf: GrammarFactory, llama_grammar: LlamaGrammar
) -> None:
    """llama.cpp's parser accepts each pattern's grammar, and what it generates under it is in
    the grammar's language and matches the pattern."""
    finished = 0
    for pattern, _good, _bad in PATTERN_CASES:
        text = schema_to_gbnf({"type": "string", "pattern": pattern})
        generated = llama_grammar(text, f"A JSON string matching /{pattern}/:")
        assert generated.status == 200, f"{pattern}: llama.cpp refused: {generated.error}"
        if not generated.complete:
            continue
        finished += 1
        assert gbnf(text).accepts(generated.text), (pattern, generated.text)
        # Python spells ECMAScript's named group (?<n>...) as (?P<n>...).
        python_pattern = pattern.replace("(?<", "(?P<")
        assert re.search(python_pattern, json.loads(generated.text)), (pattern, generated.text)
    assert finished >= len(PATTERN_CASES) // 2, f"only {finished} finished"


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
