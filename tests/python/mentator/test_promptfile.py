from __future__ import annotations

import json

import pytest

from mentator.promptfile import (
    PromptFormatError,
    format_prompt_file,
    parse_option_value,
    parse_prompt_file,
)
from mentator_testing.spec_examples import PROMPT_FILE, PROMPT_FILE_JSON


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_verified_example_from_the_original() -> None:
    assert compact(parse_prompt_file(PROMPT_FILE)) == PROMPT_FILE_JSON


def test_verified_example_formats_back_to_the_same_text_and_round_trips() -> None:
    prompts = parse_prompt_file(PROMPT_FILE)
    text = format_prompt_file(prompts)
    assert text == "\n".join(
        [
            "$$begin",
            "$$llm",
            "model=abc.gguf",
            "gpulayer=5",
            "$$options",
            "temperature=0.5",
            "$$system",
            "S",
            "$$user",
            "U line",
            "$$jsonresponse",
            '{"type":"string"}',
            "$$segment=mentator-llm-service",
            '{"useGrammar":false}',
            "$$end",
        ]
    )
    assert parse_prompt_file(text) == prompts


def test_round_trip_of_a_rich_prompt_list() -> None:
    prompts = [
        {
            "llm": {"url": "http://localhost:19777", "model": "qwen.gguf", "gpulayer": 10},
            "options": {
                "temperature": 0.7,
                "topK": 40,
                "penalizeNewline": False,
                "stopSequences": ["END", "a=b"],
                "tokenBias": {"hello": -1.5},
                "seed": 42,
            },
            "system": "line 1\nline 2",
            "user": "question\n\nwith blank line",
            "jsonresponse": '{\n  "type": "object"\n}',
            "segment": {"a": "first", "b": "second"},
            "tool": [
                {"name": "calc", "spec": {"description": "math"}, "lang": "js", "code": "return 1"},
                {"name": "plain"},
            ],
        },
        {"user": "second prompt"},
    ]
    text = format_prompt_file(prompts)
    assert text.count("$$begin") == 2 and not text.endswith("\n")
    assert parse_prompt_file(text) == prompts


def test_blocks_without_user_are_dropped_and_begin_closes_open_block() -> None:
    text = "$$begin\n$$system\nonly system\n$$end\n$$begin\n$$user\nfirst\n$$begin\n$$user\nsecond"
    assert parse_prompt_file(text) == [{"user": "first"}, {"user": "second"}]
    assert parse_prompt_file("no blocks here") == []
    assert parse_prompt_file("$$begin\n$$user\n\n$$end") == []


def test_section_order_free_and_content_trimmed() -> None:
    text = "$$begin\n$$user\n  U  \n$$options\ntopK=10\n$$system\n\n S \n\n$$end"
    assert parse_prompt_file(text) == [{"user": "U", "options": {"topK": 10}, "system": "S"}]


def test_options_value_rules() -> None:
    text = "\n".join(
        [
            "$$begin",
            "$$options",
            "temperature=0,7",
            "topP='0.9'",
            "minP=",
            "penalizeNewline=y",
            "trimWhitespace=N",
            'stopSequences=["x", "y"]',
            "maxTokens=1.0",
            "unknown=1",
            "no equals sign",
            "=5",
            "mirostat=1",
            "$$user",
            "u",
            "$$end",
        ]
    )
    (prompt,) = parse_prompt_file(text)
    assert prompt["options"] == {
        "temperature": 0.7,
        "topP": 0.9,
        "maxTokens": 1,
        "mirostat": 1,
        "penalizeNewline": True,
        "stopSequences": ["x", "y"],
        "trimWhitespace": False,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("5", 5),
        ("-2.5", -2.5),
        ("0,5", 0.5),
        ('"7"', 7),
        ("1e3", 1000),
        ("3b-model", "3b-model"),
        ("TRUE", True),
        ("n", False),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("[not json", "[not json"),
        ("'text'", "text"),
        ("Infinity", "Infinity"),
    ],
)
def test_parse_option_value(text: str, expected: object) -> None:
    assert parse_option_value(text) == expected
    assert type(parse_option_value(text)) is type(expected)


def test_llm_section_keeps_text_and_drops_bad_gpulayer() -> None:
    text = "$$begin\n$$llm\nmodel=7\nurl='http://h:1'\ngpulayer=abc\n$$user\nu\n$$end"
    assert parse_prompt_file(text)[0]["llm"] == {"url": "http://h:1", "model": "7"}
    assert "llm" not in parse_prompt_file("$$begin\n$$llm\ngpulayer=x\n$$user\nu\n$$end")[0]


def test_tool_sections() -> None:
    text = "\n".join(
        [
            "$$begin",
            "$$user",
            "u",
            "$$tool",
            '[{"name":"a","spec":{"x":1}},{"name":"b"}]',
            "$$tool=js=a",
            "  return 42  ",
            "$$tool=py=b",
            "print(1)",
            "$$end",
            "$$begin",
            "$$user",
            "u2",
            "$$tool",
            "not json",
            "$$end",
        ]
    )
    first, second = parse_prompt_file(text)
    assert first["tool"] == [
        {"name": "a", "spec": {"x": 1}, "lang": "js", "code": "return 42"},
        {"name": "b"},
    ]
    assert "tool" not in second


def test_segment_without_name_is_ignored() -> None:
    assert parse_prompt_file("$$begin\n$$user\nu\n$$segment=\ntext\n$$end") == [{"user": "u"}]


def test_format_minimal_and_bad_input() -> None:
    assert format_prompt_file([{"user": "Hello"}]) == "$$begin\n$$user\nHello\n$$end"
    assert format_prompt_file([]) == ""
    assert format_prompt_file([{}]) == "$$begin\n$$user\n\n$$end"
    with pytest.raises(PromptFormatError, match=r"prompts\[1\] must be an object"):
        format_prompt_file([{"user": "a"}, "b"])
    with pytest.raises(PromptFormatError):
        format_prompt_file("text")
