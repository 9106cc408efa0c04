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
    hoist_deep,
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


def test_repeated_group_over_llama_cpp_budget_becomes_a_rule() -> None:
    # ( "a" [b]{0,100} ){0,20}: 101 rules repeated 20 times, llama.cpp refuses over 2000.
    grouped = repeat(seq(lit("a"), repeat(chars(["b"]), 0, 100)), 0, 20)
    text = render_grammar({"root": grouped})
    assert text.splitlines()[0] == "root ::= root-deep{0,20}"
    small = repeat(seq(lit("a"), repeat(chars(["b"]), 0, 10)), 0, 20)  # 12 x 20 is fine
    assert render_grammar({"root": small}).startswith('root ::= ( "a" [b]{0,10} ){0,20}')


def test_counts_of_2000_are_unbounded_or_refused() -> None:
    assert repeat(lit("a"), 0, 2000) == Repeat(Literal("a"), 0, None)
    assert repeat(lit("a"), 3, 1999) == Repeat(Literal("a"), 3, 1999)
    with pytest.raises(GrammarError, match="2000 times or more"):
        check_grammar({"root": Repeat(lit("a"), 2000, None)})


def test_deep_trees_are_split_into_rules() -> None:
    deep = lit("x")
    for _ in range(5000):
        deep = seq(lit("("), choice(deep, lit("y")), lit(")"))
    shallow = hoist_deep({"root": deep})
    assert len(shallow) > 1
    check_grammar(shallow)  # a deep tree would be refused, and recursion would not be bounded
    with pytest.raises(GrammarError, match="nests deeper"):
        check_grammar({"root": deep})
