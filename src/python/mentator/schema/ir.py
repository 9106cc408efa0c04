"""A small tree form of GBNF grammars, rendered to the text llama.cpp's grammar parser reads.

The converter builds these trees instead of concatenating strings so that escaping, grouping
and the left-recursion check (llama.cpp rejects left-recursive grammars at request time) live
in one place. Syntax facts used here come from llama.cpp's ``src/llama-grammar.cpp``: rule
names are ``[A-Za-z0-9-]+``; literals and character classes accept the escapes
``\\x.. \\u.... \\U........ \\t \\r \\n \\\\ \\" \\[ \\] \\-``; repetition ``{m,n}`` with
``m`` above 2000 is refused and ``n`` above 2000 silently becomes unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_REPETITION = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD


@dataclass(frozen=True)
class Literal:
    """An exact text; ``Literal("")`` matches the empty string."""

    text: str


@dataclass(frozen=True)
class CharSet:
    """One code point out of ``ranges`` (inclusive pairs), or any other one when ``negated``."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False


@dataclass(frozen=True)
class RuleRef:
    name: str


@dataclass(frozen=True)
class Sequence:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Choice:
    options: tuple[Expr, ...]


@dataclass(frozen=True)
class Repeat:
    item: Expr
    minimum: int
    maximum: int | None  # None = unbounded


Expr = Literal | CharSet | RuleRef | Sequence | Choice | Repeat

EMPTY = Literal("")


class GrammarError(ValueError):
    """The grammar cannot be used by llama.cpp (left recursion, undefined rule)."""


# ---------------------------------------------------------------- constructors that simplify


def lit(text: str) -> Expr:
    return Literal(text)


def chars(spec: Iterable[str | tuple[str, str]], *, negated: bool = False) -> CharSet:
    """``chars(["a", ("0", "9")])`` is ``[a0-9]``."""
    ranges: list[tuple[int, int]] = []
    for item in spec:
        if isinstance(item, tuple):
            ranges.append((ord(item[0]), ord(item[1])))
        else:
            ranges.append((ord(item), ord(item)))
    return CharSet(tuple(ranges), negated)


def seq(*items: Expr) -> Expr:
    """Concatenation; nested sequences are flattened, adjacent literals joined, empties dropped."""
    flat: list[Expr] = []
    for item in items:
        parts = item.items if isinstance(item, Sequence) else (item,)
        for part in parts:
            if part == EMPTY:
                continue
            if isinstance(part, Literal) and flat and isinstance(flat[-1], Literal):
                flat[-1] = Literal(flat[-1].text + part.text)
            else:
                flat.append(part)
    if not flat:
        return EMPTY
    if len(flat) == 1:
        return flat[0]
    return Sequence(tuple(flat))


def choice(*options: Expr) -> Expr:
    """Alternatives; nested choices are flattened and duplicates dropped (first kept)."""
    flat: list[Expr] = []
    for option in options:
        for part in option.options if isinstance(option, Choice) else (option,):
            if part not in flat:
                flat.append(part)
    if len(flat) == 1:
        return flat[0]
    if EMPTY in flat and len(flat) == 2:
        (other,) = (part for part in flat if part != EMPTY)
        return optional(other)
    return Choice(tuple(flat))


def repeat(item: Expr, minimum: int, maximum: int | None) -> Expr:
    if maximum is not None and maximum > MAX_REPETITION:
        maximum = None  # what llama.cpp would do anyway; keeps the rendered grammar honest
    if maximum == 0 or item == EMPTY:
        return EMPTY
    if minimum == 1 and maximum == 1:
        return item
    return Repeat(item, minimum, maximum)


def optional(item: Expr) -> Expr:
    return repeat(item, 0, 1)


# ---------------------------------------------------------------- rendering

_LITERAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CLASS_ESCAPES = {"\\": "\\\\", "]": "\\]", "[": "\\[", "-": "\\-", '"': '\\"', "^": "\\x5E"}


def _escape_code_point(code: int, table: Mapping[str, str]) -> str:
    char = chr(code)
    if char in table:
        return table[char]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02X}"
    if 0xD800 <= code <= 0xDFFF:  # lone surrogates cannot be written as UTF-8
        return f"\\u{code:04X}"
    return char


def _render_literal(text: str) -> str:
    return '"' + "".join(_escape_code_point(ord(char), _LITERAL_ESCAPES) for char in text) + '"'


def _render_charset(charset: CharSet) -> str:
    body = []
    for low, high in charset.ranges:
        first = _escape_code_point(low, _CLASS_ESCAPES)
        body.append(first if low == high else f"{first}-{_escape_code_point(high, _CLASS_ESCAPES)}")
    return "[" + ("^" if charset.negated else "") + "".join(body) + "]"


def _suffix(minimum: int, maximum: int | None) -> str:
    if (minimum, maximum) == (0, 1):
        return "?"
    if (minimum, maximum) == (0, None):
        return "*"
    if (minimum, maximum) == (1, None):
        return "+"
    if maximum is None:
        return f"{{{minimum},}}"
    if minimum == maximum:
        return f"{{{minimum}}}"
    return f"{{{minimum},{maximum}}}"


def render_expr(expr: Expr, *, nested: bool = False) -> str:
    """GBNF text of ``expr``; ``nested`` wraps alternatives in parentheses."""
    if isinstance(expr, Literal):
        return _render_literal(expr.text)
    if isinstance(expr, CharSet):
        return _render_charset(expr)
    if isinstance(expr, RuleRef):
        return expr.name
    if isinstance(expr, Sequence):
        return " ".join(render_expr(item, nested=True) for item in expr.items)
    if isinstance(expr, Choice):
        text = " | ".join(render_expr(option) for option in expr.options)
        return f"( {text} )" if nested else text
    item = expr.item
    if isinstance(item, Choice):
        inner = render_expr(item, nested=True)
    elif isinstance(item, (Sequence, Repeat)):
        inner = f"( {render_expr(item)} )"
    else:
        inner = render_expr(item)
    return inner + _suffix(expr.minimum, expr.maximum)


def render_grammar(rules: Mapping[str, Expr]) -> str:
    """``name ::= body`` lines, ``root`` first, the rest sorted by name (stable output)."""
    check_grammar(rules)
    names = ["root", *sorted(name for name in rules if name != "root")]
    return "".join(f"{name} ::= {render_expr(rules[name])}\n" for name in names)


# ---------------------------------------------------------------- checks llama.cpp would make

_RULE_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def _references(expr: Expr) -> Iterable[str]:
    if isinstance(expr, RuleRef):
        yield expr.name
    elif isinstance(expr, Sequence):
        for item in expr.items:
            yield from _references(item)
    elif isinstance(expr, Choice):
        for option in expr.options:
            yield from _references(option)
    elif isinstance(expr, Repeat):
        yield from _references(expr.item)


def _nullable(expr: Expr, nullable_rules: set[str]) -> bool:
    if isinstance(expr, Literal):
        return expr.text == ""
    if isinstance(expr, CharSet):
        return False
    if isinstance(expr, RuleRef):
        return expr.name in nullable_rules
    if isinstance(expr, Sequence):
        return all(_nullable(item, nullable_rules) for item in expr.items)
    if isinstance(expr, Choice):
        return any(_nullable(option, nullable_rules) for option in expr.options)
    return expr.minimum == 0 or _nullable(expr.item, nullable_rules)


def _leading_refs(expr: Expr, nullable_rules: set[str]) -> set[str]:
    """Rules that can be entered before ``expr`` consumed any character."""
    if isinstance(expr, RuleRef):
        return {expr.name}
    if isinstance(expr, Sequence):
        found: set[str] = set()
        for item in expr.items:
            found |= _leading_refs(item, nullable_rules)
            if not _nullable(item, nullable_rules):
                break
        return found
    if isinstance(expr, Choice):
        return set().union(*(_leading_refs(option, nullable_rules) for option in expr.options))
    if isinstance(expr, Repeat):
        return _leading_refs(expr.item, nullable_rules)
    return set()


def check_grammar(rules: Mapping[str, Expr]) -> None:
    """Raise ``GrammarError`` for what llama.cpp's parser would refuse."""
    if "root" not in rules:
        raise GrammarError("grammar has no root rule")
    for name, body in rules.items():
        if not _RULE_NAME.match(name):
            raise GrammarError(f"invalid rule name {name!r}")
        for ref in _references(body):
            if ref not in rules:
                raise GrammarError(f"rule {name!r} refers to undefined rule {ref!r}")
    nullable_rules: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, body in rules.items():
            if name not in nullable_rules and _nullable(body, nullable_rules):
                nullable_rules.add(name)
                changed = True
    edges = {name: _leading_refs(body, nullable_rules) for name, body in rules.items()}
    state: dict[str, int] = {}  # 1 = on the DFS path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [name, target]
                raise GrammarError("left recursion: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(rules):
        if name not in state:
            visit(name, [name])
