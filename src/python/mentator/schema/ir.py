"""A small tree form of GBNF grammars, rendered to the text llama.cpp's grammar parser reads.

The converter builds these trees instead of concatenating strings so that escaping, grouping
and the left-recursion check (llama.cpp rejects left-recursive grammars at request time) live
in one place. Syntax facts used here come from llama.cpp's ``src/llama-grammar.cpp``: rule
names are ``[A-Za-z0-9-]+``; literals and character classes accept the escapes
``\\x.. \\u.... \\U........ \\t \\r \\n \\\\ \\" \\[ \\] \\-``; repetition ``{m,n}`` with
``m`` above 2000 is refused and ``n`` above 2000 silently becomes unbounded.

Repetition budget. llama.cpp also refuses ``X{m,n}`` when (symbols X creates) x (n, or m when
unbounded) reaches 2000, where a rule name or a literal counts 1 and a parenthesised group
counts every rule it makes: each group, each rule a repetition inside it expands to (n - m of
them), each rule name mentioned there for the first time. So ``char{0,2000}`` alone is refused,
and ``( "a" [b]{0,100} ){0,20}`` too (101 x 20). Here no repetition count reaches 2000
(``repeat`` makes larger maxima unbounded, the converter refuses larger minima) and
``hoist_deep`` moves a repeated group into a rule of its own whenever its budget would be
exceeded, so the repeated item is a single rule name.

Depth. llama.cpp's grammar parser and its left-recursion check are recursive: measured with the
engine of the image (llama-server build 11669, 8 MiB stack), parentheses nested 20 000 deep or
a chain of 100 000 rules that each start with the next one crash the whole server (SIGSEGV),
while 15 000 / 50 000 still parse. So the trees are kept shallow before they are rendered
(``hoist_deep``: anything nested deeper than ``MAX_NESTING`` becomes a rule of its own, which
changes no language), and ``check_grammar`` refuses leading-rule chains longer than
``MAX_LEADING_CHAIN``. Every walk here is either iterative or bounded by ``MAX_NESTING``, so no
input can exhaust Python's recursion limit either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_REPETITION = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD
MAX_COUNT = MAX_REPETITION - 1  # the largest repetition count llama.cpp accepts (see above)
# Deepest expression nesting rendered (llama.cpp overflows its stack near 16 000; see above).
MAX_NESTING = 48
# Longest chain of rules each starting with the next (llama.cpp crashed at 100 000).
MAX_LEADING_CHAIN = 5000


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
    if maximum is not None and maximum > MAX_COUNT:
        maximum = None  # llama.cpp refuses {m,2000} and ignores larger maxima: say it here
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
    """``name ::= body`` lines, ``root`` first, the rest sorted by name (stable output).

    Deeply nested bodies are split into rules first (``hoist_deep``), so the text never nests
    deeper than ``MAX_NESTING``.
    """
    shallow = hoist_deep(rules)
    check_grammar(shallow)
    return render_checked(shallow)


def render_checked(rules: Mapping[str, Expr]) -> str:
    """``render_grammar`` for rules that already went through ``hoist_deep``/``check_grammar``."""
    names = ["root", *sorted(name for name in rules if name != "root")]
    return "".join(f"{name} ::= {render_expr(rules[name])}\n" for name in names)


# ---------------------------------------------------------------- keeping trees shallow


def hoist_deep(rules: Mapping[str, Expr], max_nesting: int = MAX_NESTING) -> dict[str, Expr]:
    """The same grammar with every subexpression nested ``max_nesting`` deep moved to a new rule.

    Iterative over rules; the rebuild of one body recurses at most ``max_nesting`` levels, so
    trees of any depth are handled. Rules without deep parts come back unchanged (same objects).
    """
    result: dict[str, Expr] = {}
    taken = set(rules)
    pending = list(rules.items())
    pending.reverse()

    def hoisted(owner: str, expr: Expr) -> RuleRef:
        base = f"{owner}-deep"
        name, counter = base, 1
        while name in taken:
            counter += 1
            name = f"{base}-{counter}"
        taken.add(name)
        pending.append((name, expr))
        return RuleRef(name)

    def rebuild(owner: str, expr: Expr, depth: int) -> Expr:
        if isinstance(expr, (Literal, CharSet, RuleRef)):
            return expr
        if depth >= max_nesting:
            return hoisted(owner, expr)
        if isinstance(expr, Sequence):
            items = tuple(rebuild(owner, item, depth + 1) for item in expr.items)
            return expr if _same(items, expr.items) else Sequence(items)
        if isinstance(expr, Choice):
            options = tuple(rebuild(owner, option, depth + 1) for option in expr.options)
            return expr if _same(options, expr.options) else Choice(options)
        item = rebuild(owner, expr.item, depth + 1)
        if _over_budget(item, expr.minimum, expr.maximum):
            item = hoisted(owner, item)
        return expr if item is expr.item else Repeat(item, expr.minimum, expr.maximum)

    while pending:
        name, body = pending.pop()
        result[name] = rebuild(name, body, 0)
    return result


def _group_symbols(expr: Expr) -> int:
    """An upper bound of the rules llama.cpp creates while parsing ``( expr )`` (the group's own
    included): every rule name counts as mentioned for the first time."""
    total = 1
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, RuleRef):
            total += 1
        elif isinstance(node, Sequence):
            stack.extend(node.items)
        elif isinstance(node, Choice):
            total += 1  # rendered in parentheses when nested
            stack.extend(node.options)
        elif isinstance(node, Repeat):
            total += 1 + (1 if node.maximum is None else node.maximum - node.minimum)
            stack.append(node.item)
    return total


def _over_budget(item: Expr, minimum: int, maximum: int | None) -> bool:
    """Whether llama.cpp would refuse ``item{minimum,maximum}`` with ``item`` inline."""
    if isinstance(item, (Literal, CharSet, RuleRef)):
        return False  # one symbol; counts stay below MAX_REPETITION (see repeat)
    total = maximum if maximum is not None and maximum > 0 else max(minimum, 1)
    return _group_symbols(item) * total >= MAX_REPETITION


def _same(first: tuple[Expr, ...], second: tuple[Expr, ...]) -> bool:
    """Identity, not ``==``: dataclass equality would recurse through arbitrarily deep trees."""
    return all(a is b for a, b in zip(first, second, strict=True))


def _map_refs(expr: Expr, target: Mapping[str, str]) -> Expr:
    """``expr`` with each ``RuleRef(a)`` for ``a`` in ``target`` replaced by ``target[a]``."""
    if isinstance(expr, RuleRef):
        return RuleRef(target[expr.name]) if expr.name in target else expr
    if isinstance(expr, Sequence):
        return Sequence(tuple(_map_refs(item, target) for item in expr.items))
    if isinstance(expr, Choice):
        return Choice(tuple(_map_refs(option, target) for option in expr.options))
    if isinstance(expr, Repeat):
        return Repeat(_map_refs(expr.item, target), expr.minimum, expr.maximum)
    return expr


def collapse_aliases(rules: Mapping[str, Expr]) -> dict[str, Expr]:
    """Drop rules whose whole body is another rule (``a ::= b``), pointing their users at the end
    of the chain. ``root`` is kept (it is the entry point); alias cycles are left alone for
    ``check_grammar`` to report. Call it on shallow trees (``hoist_deep``): it recurses on them.
    """
    final: dict[str, str] = {}
    for name, body in rules.items():
        if name == "root" or not isinstance(body, RuleRef):
            continue
        seen = {name}
        end = body.name
        while isinstance(rules.get(end), RuleRef) and end not in seen and end != "root":
            seen.add(end)
            next_body = rules[end]
            assert isinstance(next_body, RuleRef)
            end = next_body.name
        if end in seen:
            continue  # a cycle of aliases: left recursion, reported by check_grammar
        final[name] = end
    if not final:
        return dict(rules)
    return {name: _map_refs(body, final) for name, body in rules.items() if name not in final}


# ---------------------------------------------------------------- rules that never finish


class NoFiniteTextError(GrammarError):
    """Even the start rule can never be completed: the grammar matches no (finite) text."""


def _finishes(expr: Expr, finishing: set[str]) -> bool:
    if isinstance(expr, (Literal, CharSet)):
        return True
    if isinstance(expr, RuleRef):
        return expr.name in finishing
    if isinstance(expr, Sequence):
        return all(_finishes(item, finishing) for item in expr.items)
    if isinstance(expr, Choice):
        return any(_finishes(option, finishing) for option in expr.options)
    return expr.minimum == 0 or _finishes(expr.item, finishing)


def _without(expr: Expr, finishing: set[str]) -> Expr | None:
    """``expr`` without its alternatives that can never finish (``None``: nothing is left)."""
    if isinstance(expr, RuleRef):
        return expr if expr.name in finishing else None
    if isinstance(expr, Sequence):
        items = [_without(item, finishing) for item in expr.items]
        kept = [item for item in items if item is not None]
        return Sequence(tuple(kept)) if len(kept) == len(items) else None
    if isinstance(expr, Choice):
        options = [
            left for option in expr.options if (left := _without(option, finishing)) is not None
        ]
        if not options:
            return None
        return options[0] if len(options) == 1 else Choice(tuple(options))
    if isinstance(expr, Repeat):
        inner = _without(expr.item, finishing)
        if inner is None:
            return EMPTY if expr.minimum == 0 else None
        return Repeat(inner, expr.minimum, expr.maximum)
    return expr


def prune_unfinishable(rules: Mapping[str, Expr]) -> dict[str, Expr]:
    """The grammar without the rules (and alternatives) that can never be completed.

    A schema can require its own recursion (``A`` requires a property of schema ``A``): no finite
    JSON text is valid there, and a model led into such a rule writes until its token limit. The
    language (finite texts) is unchanged. Raises ``NoFiniteTextError`` when ``root`` itself can
    never finish. Call it on shallow trees (``hoist_deep``): it recurses on them.
    """
    finishing: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, body in rules.items():
            if name not in finishing and _finishes(body, finishing):
                finishing.add(name)
                changed = True
    if len(finishing) == len(rules):
        return dict(rules)
    if "root" not in finishing:
        endless = sorted(name for name in rules if name not in finishing)
        raise NoFiniteTextError(
            "no finite text matches: the rules "
            + ", ".join(endless[:5])
            + (" ..." if len(endless) > 5 else "")
            + " always need themselves again (a required property or item that recurses)"
        )
    pruned: dict[str, Expr] = {}
    for name in finishing:
        finishing_body = _without(rules[name], finishing)
        assert finishing_body is not None  # the rule finishes, so some alternative does
        pruned[name] = finishing_body
    return pruned


# ---------------------------------------------------------------- checks llama.cpp would make

_RULE_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def _references(expr: Expr) -> Iterable[str]:
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, RuleRef):
            yield node.name
        elif isinstance(node, Sequence):
            stack.extend(reversed(node.items))
        elif isinstance(node, Choice):
            stack.extend(reversed(node.options))
        elif isinstance(node, Repeat):
            stack.append(node.item)


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


def is_nullable(expr: Expr) -> bool:
    """Whether ``expr`` matches the empty string (rules it refers to are taken as not)."""
    return _nullable(expr, set())


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


def _repeat_counts(expr: Expr) -> Iterable[int]:
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Sequence):
            stack.extend(node.items)
        elif isinstance(node, Choice):
            stack.extend(node.options)
        elif isinstance(node, Repeat):
            yield node.minimum
            if node.maximum is not None:
                yield node.maximum
            stack.append(node.item)


def _nesting(expr: Expr) -> int:
    """How deep ``expr`` nests (iterative: the trees checked may be arbitrarily deep)."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Sequence):
            stack.extend((item, depth + 1) for item in node.items)
        elif isinstance(node, Choice):
            stack.extend((option, depth + 1) for option in node.options)
        elif isinstance(node, Repeat):
            stack.append((node.item, depth + 1))
    return deepest


def check_grammar(rules: Mapping[str, Expr]) -> None:
    """Raise ``GrammarError`` for what llama.cpp's parser would refuse (or crash on).

    Bodies must be shallow (``hoist_deep``); a deeper one is reported, not walked recursively.
    """
    if "root" not in rules:
        raise GrammarError("grammar has no root rule")
    for name, body in rules.items():
        if not _RULE_NAME.match(name):
            raise GrammarError(f"invalid rule name {name!r}")
        if any(count > MAX_COUNT for count in _repeat_counts(body)):
            raise GrammarError(
                f"rule {name!r} repeats something {MAX_REPETITION} times or more "
                "(llama.cpp refuses that)"
            )
        if _nesting(body) > MAX_NESTING + 1:
            raise GrammarError(
                f"rule {name!r} nests deeper than {MAX_NESTING} levels (hoist_deep it first)"
            )
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
    edges = {name: sorted(_leading_refs(body, nullable_rules)) for name, body in rules.items()}
    _check_leading_paths(edges)


def _check_leading_paths(edges: Mapping[str, list[str]]) -> None:
    """No cycle of leading references (left recursion), no leading chain over the limit.

    An explicit-stack depth-first search: chains can be far longer than Python's recursion limit.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    longest: dict[str, int] = {}  # rules in the longest leading chain starting at a done rule
    for start in sorted(edges):
        if start in state:
            continue
        path: list[str] = [start]
        iterators = [iter(edges[start])]
        state[start] = 1
        while path:
            target = next(iterators[-1], None)
            if target is None:
                done = path.pop()
                iterators.pop()
                state[done] = 2
                longest[done] = 1 + max((longest[child] for child in edges[done]), default=0)
                if longest[done] > MAX_LEADING_CHAIN:
                    raise GrammarError(
                        f"a chain of more than {MAX_LEADING_CHAIN} rules that each start with "
                        f"the next one (from {done!r}); llama.cpp's parser recurses through "
                        "such chains and crashes on long ones"
                    )
                continue
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise GrammarError("left recursion: " + " -> ".join(cycle))
            if target not in state:
                state[target] = 1
                path.append(target)
                iterators.append(iter(edges[target]))
