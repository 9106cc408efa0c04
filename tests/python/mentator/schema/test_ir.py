from __future__ import annotations

import pytest

from mentator.schema.ir import (
    EMPTY,
    CharSet,
    GrammarError,
    Literal,
    Repeat,
    RuleRef,
    chars,
    check_grammar,
    choice,
    lit,
    optional,
    render_expr,
    render_grammar,
    repeat,
    seq,
)


def test_literal_and_class_escaping() -> None:
    assert render_expr(lit('a"b\\c\n\t\x01')) == '"a\\"b\\\\c\\n\\t\\x01"'
    assert render_expr(chars(["-", "]", "^", ("a", "z")])) == "[\\-\\]\\x5Ea-z]"
    assert render_expr(CharSet(((0, 0x1F),), negated=True)) == "[^\\x00-\\x1F]"


def test_constructors_simplify() -> None:
    assert seq(lit("a"), EMPTY, lit("b")) == Literal("ab")
    assert choice(lit("a"), lit("a")) == Literal("a")
    assert choice(lit("a"), EMPTY) == Repeat(Literal("a"), 0, 1)
    assert repeat(lit("a"), 1, 1) == Literal("a")
    assert repeat(lit("a"), 0, 0) == EMPTY
    assert repeat(lit("a"), 0, 5000) == Repeat(Literal("a"), 0, None)


def test_grouping_in_render() -> None:
    expr = seq(
        choice(lit("a"), lit("b")),
        repeat(seq(lit("c"), RuleRef("x")), 2, None),
        optional(choice(lit("d"), lit("e"))),
    )
    assert render_expr(expr) == '( "a" | "b" ) ( "c" x ){2,} ( "d" | "e" )?'


def test_render_grammar_puts_root_first() -> None:
    text = render_grammar({"b": lit("b"), "root": seq(RuleRef("b"), RuleRef("a")), "a": lit("a")})
    assert text == 'root ::= b a\na ::= "a"\nb ::= "b"\n'


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"a": lit("x")}, "no root"),
        ({"root": RuleRef("missing")}, "undefined rule"),
        ({"root": RuleRef("a"), "a": seq(RuleRef("a"), lit("x"))}, "left recursion"),
        (
            {
                "root": RuleRef("a"),
                "a": seq(optional(lit("y")), RuleRef("b")),
                "b": choice(RuleRef("a"), lit("z")),
            },
            "left recursion",
        ),
        ({"root": lit("x"), "bad_name": lit("y")}, "invalid rule name"),
    ],
)
def test_check_grammar_refuses_what_llama_cpp_refuses(
    rules: dict[str, object], message: str
) -> None:
    with pytest.raises(GrammarError, match=message):
        check_grammar(rules)  # type: ignore[arg-type]


def test_right_recursion_is_fine() -> None:
    check_grammar({"root": RuleRef("a"), "a": seq(lit("x"), optional(RuleRef("a")))})
