"""A subset of JSON Schema ``pattern`` (ECMA-262 regular expressions) turned into grammar trees.

The tree matches the *JSON-encoded* string content, so a ``"`` in the pattern becomes ``\\"`` in
the output and characters that JSON forbids raw (controls) become escapes.

Supported: literals, ``.``, classes ``[...]``/``[^...]`` with ranges, ``\\d \\w \\s \\D \\W \\S``,
escaped metacharacters, ``\\t \\n \\r \\uXXXX``, groups ``(...)``, ``(?:...)``, named groups,
alternation, quantifiers ``* + ? {m} {m,} {m,n}`` (lazy ``?`` accepted, same language),
``\\xHH``, and the anchors ``^``/``$`` anywhere outside a repeated group. JSON Schema patterns
are not anchored: a branch without ``^`` may have any text before it, one without ``$`` any
text after. Groups that contain anchors are distributed into branches (``(^a|b)c`` is
``^ac | bc``); in a branch, what stands before its last ``^`` or after its first ``$`` must
match the empty string (else the branch matches nothing) and is dropped.
Refused with a clear message: back-references, look-around, word boundaries, anchors inside a
repeated group, patterns no string can match, groups nested more than ``MAX_GROUP_NESTING``
deep (the parser recurses once per group).
"""

from __future__ import annotations

from dataclasses import dataclass

from mentator.schema.ir import (
    EMPTY,
    MAX_COUNT,
    CharSet,
    Expr,
    RuleRef,
    choice,
    is_nullable,
    lit,
    repeat,
    seq,
)

# Code points that cannot appear raw inside a JSON string.
_JSON_FORBIDDEN: tuple[tuple[int, int], ...] = (
    (0x00, 0x1F),
    (0x22, 0x22),
    (0x5C, 0x5C),
    (0x7F, 0x7F),
)
_MAX_CODE_POINT = 0x10FFFF
_JSON_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}

# Real patterns nest a handful of groups; the parser recurses a few frames per group.
MAX_GROUP_NESTING = 50
# Branches a pattern may have once its groups with anchors are distributed.
MAX_BRANCHES = 256

# A branch: its items in order, each a grammar tree or an anchor ("^" or "$").
Branch = list[Expr | str]

_DIGIT = ((ord("0"), ord("9")),)
_WORD = ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("_"), ord("_")), (ord("a"), ord("z")))
_SPACE = ((0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x2028, 0x2029), (0xFEFF, 0xFEFF))


class PatternError(ValueError):
    """The pattern uses regular-expression syntax the grammar converter does not support, or
    (``matches_nothing``) no string can match it."""

    def __init__(self, message: str, *, matches_nothing: bool = False) -> None:
        super().__init__(message)
        self.matches_nothing = matches_nothing


def json_encoded(char: str) -> str:
    """How ``char`` is written inside a JSON string."""
    if char in _JSON_SHORT_ESCAPES:
        return _JSON_SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\u{code:04x}"
    return char


def _normalise(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    start = 0
    for low, high in _normalise(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        result.append((start, _MAX_CODE_POINT))
    return result


def _subtract(
    ranges: list[tuple[int, int]], removed: tuple[tuple[int, int], ...]
) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for low, high in _normalise(ranges):
        pieces = [(low, high)]
        for cut_low, cut_high in removed:
            next_pieces = []
            for piece_low, piece_high in pieces:
                if cut_high < piece_low or cut_low > piece_high:
                    next_pieces.append((piece_low, piece_high))
                    continue
                if piece_low < cut_low:
                    next_pieces.append((piece_low, cut_low - 1))
                if piece_high > cut_high:
                    next_pieces.append((cut_high + 1, piece_high))
            pieces = next_pieces
        result.extend(pieces)
    return result


def set_of_code_points(ranges: list[tuple[int, int]], negated: bool) -> Expr:
    """Grammar for one character of a class, written as JSON string content."""
    wanted = _complement(ranges) if negated else _normalise(ranges)
    plain = _subtract(wanted, _JSON_FORBIDDEN)
    options: list[Expr] = []
    if plain:
        # A class equal to "everything JSON allows raw" renders shorter as a negated set.
        allowed_everything = _complement(list(_JSON_FORBIDDEN))
        options.append(
            CharSet(_JSON_FORBIDDEN, True) if plain == allowed_everything else CharSet(tuple(plain))
        )
    for low, high in wanted:
        for forbidden_low, forbidden_high in _JSON_FORBIDDEN:
            for code in range(max(low, forbidden_low), min(high, forbidden_high) + 1):
                options.append(lit(json_encoded(chr(code))))
    if not options:
        raise PatternError("a character class that matches nothing")
    return choice(*options)


@dataclass
class _Parser:
    pattern: str
    longest: int | None = None  # the most repetitions of an unbounded quantifier (None: any)
    position: int = 0
    depth: int = 0  # groups open at ``position``

    def error(self, what: str) -> PatternError:
        return PatternError(f"{what} at position {self.position} of pattern {self.pattern!r}")

    def peek(self) -> str | None:
        return self.pattern[self.position] if self.position < len(self.pattern) else None

    def take(self) -> str:
        char = self.pattern[self.position]
        self.position += 1
        return char

    # alternation := sequence ('|' sequence)*
    def alternation(self) -> list[Branch]:
        branches = self.sequence()
        while self.peek() == "|":
            self.take()
            branches += self.sequence()
        return branches

    def sequence(self) -> list[Branch]:
        branches: list[Branch] = [[]]
        while (char := self.peek()) is not None and char not in "|)":
            if char in "^$":
                self.take()
                if self._quantifier_follows():
                    raise self.error(f"nothing to repeat before the anchor {char!r}")
                for branch in branches:
                    branch.append(char)
                continue
            atom = self.atom()
            if isinstance(atom, list):  # a group
                if any(isinstance(item, str) for branch in atom for item in branch):
                    if self._quantifier_follows():
                        raise self.error("an anchor inside a repeated group is not supported")
                    branches = [branch + inner for branch in branches for inner in atom]
                    if len(branches) > MAX_BRANCHES:
                        raise self.error(
                            f"more than {MAX_BRANCHES} branches once anchored groups are "
                            "distributed"
                        )
                    continue
                atom = _fold(atom)
            item = self.quantified(atom)
            for branch in branches:
                branch.append(item)
        return branches

    def _quantifier_follows(self) -> bool:
        char = self.peek()
        return char is not None and (char in "*+?" or (char == "{" and self._looks_like_braces()))

    def quantified(self, atom: Expr) -> Expr:
        char = self.peek()
        bounds: tuple[int, int | None] | None = None
        if char == "*":
            bounds = (0, self.longest)
        elif char == "+":
            bounds = (1, self.longest)
        elif char == "?":
            bounds = (0, 1)
        elif char == "{" and self._looks_like_braces():
            return self.quantified_braces(atom)
        if bounds is None:
            return atom
        self.take()
        self._skip_lazy()
        return repeat(atom, bounds[0], bounds[1])

    def _looks_like_braces(self) -> bool:
        end = self.pattern.find("}", self.position)
        body = self.pattern[self.position + 1 : end] if end > 0 else ""
        return (
            bool(body)
            and all(part.isdigit() or part == "" for part in body.split(",", 1))
            and body[0].isdigit()
        )

    def quantified_braces(self, atom: Expr) -> Expr:
        end = self.pattern.index("}", self.position)
        body = self.pattern[self.position + 1 : end]
        self.position = end + 1
        self._skip_lazy()
        if "," in body:
            low_text, high_text = body.split(",", 1)
            low, high = int(low_text), (int(high_text) if high_text else None)
        else:
            low = high = int(body)
        if high is not None and high < low:
            raise self.error(f"quantifier {{{body}}} has max < min")
        if low > MAX_COUNT:
            raise self.error(
                f"quantifier {{{body}}}: more than {MAX_COUNT} repetitions are not supported"
            )
        if high is None and self.longest is not None:
            high = max(low, self.longest)
        return repeat(atom, low, high)

    def _skip_lazy(self) -> None:
        if self.peek() == "?":
            self.take()  # lazy quantifiers match the same strings
        elif self.peek() == "+":
            raise self.error("possessive quantifiers are not supported")

    def atom(self) -> Expr | list[Branch]:
        char = self.take()
        if char == "(":
            return self.group()
        if char == "[":
            return self.char_class()
        if char == ".":
            return RuleRef("char")
        if char == "\\":
            return self.escape(in_class=False)[0]
        if char in "*+?":
            raise self.error(f"nothing to repeat before {char!r}")
        return lit(json_encoded(char))

    def group(self) -> list[Branch]:
        if self.pattern.startswith("?:", self.position):
            self.position += 2
        elif self.pattern.startswith("?P<", self.position) or (
            self.pattern.startswith("?<", self.position)
            and self.pattern[self.position + 2 : self.position + 3] not in "=!"
        ):
            self.position = self.pattern.index(">", self.position) + 1
        elif self.peek() == "?":
            raise self.error("look-around and inline flags are not supported")
        if self.depth >= MAX_GROUP_NESTING:
            raise self.error(f"groups nested deeper than {MAX_GROUP_NESTING} are not supported")
        self.depth += 1
        inner = self.alternation()
        self.depth -= 1
        if self.peek() != ")":
            raise self.error("missing ')'")
        self.take()
        return inner

    def escape(self, *, in_class: bool) -> tuple[Expr, list[tuple[int, int]] | None]:
        """An escape; returns the grammar and, for single characters or classes, the code points."""
        if self.peek() is None:
            raise self.error("pattern ends with a lone backslash")
        char = self.take()
        classes = {
            "d": (_DIGIT, False),
            "D": (_DIGIT, True),
            "w": (_WORD, False),
            "W": (_WORD, True),
        }
        classes |= {"s": (_SPACE, False), "S": (_SPACE, True)}
        if char in classes:
            ranges, negated = classes[char]
            points = _complement(list(ranges)) if negated else list(ranges)
            return set_of_code_points(list(ranges), negated), points
        simple = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
        if char == "x":
            digits = self.pattern[self.position : self.position + 2]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error("\\x needs two hex digits")
            self.position += 2
            code = int(digits, 16)
            return lit(json_encoded(chr(code))), [(code, code)]
        if char in simple:
            code = ord(simple[char])
            return lit(json_encoded(simple[char])), [(code, code)]
        if char == "u":
            digits = self.pattern[self.position : self.position + 4]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error("\\u needs four hex digits")
            self.position += 4
            code = int(digits, 16)
            return lit(json_encoded(chr(code))), [(code, code)]
        if char == "b" and in_class:
            return lit(json_encoded("\b")), [(8, 8)]
        if char.isalnum():
            raise self.error(f"escape \\{char} is not supported (back-references, boundaries, ...)")
        return lit(json_encoded(char)), [(ord(char), ord(char))]

    def char_class(self) -> Expr:
        negated = self.peek() == "^"
        if negated:
            self.take()
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            char = self.peek()
            if char is None:
                raise self.error("missing ']'")
            if char == "]" and not first:
                self.take()
                break
            first = False
            low = self._class_item()
            if low is None:
                continue
            if self.peek() == "-" and self.pattern[self.position + 1 : self.position + 2] not in (
                "]",
                "",
            ):
                self.take()
                high = self._class_item()
                if high is None or len(low) != 1 or len(high) != 1 or low[0][0] != low[0][1]:
                    raise self.error("a range bound must be a single character")
                if high[0][0] < low[0][0]:
                    raise self.error("range out of order in character class")
                ranges.append((low[0][0], high[0][1]))
            else:
                ranges.extend(low)
        return set_of_code_points(ranges, negated)

    def _class_item(self) -> list[tuple[int, int]] | None:
        char = self.take()
        if char == "\\":
            _, points = self.escape(in_class=True)
            return points
        return [(ord(char), ord(char))]


def _fold(branches: list[Branch]) -> Expr:
    """The grammar of anchor-free branches."""
    return choice(
        *(seq(*(item for item in branch if not isinstance(item, str))) for branch in branches)
    )


def _anchored(branch: Branch, any_text: Expr) -> Expr | None:
    """The string content a branch matches, its anchors applied; ``None`` when it matches none."""
    carets = [index for index, item in enumerate(branch) if item == "^"]
    dollars = [index for index, item in enumerate(branch) if item == "$"]
    start = carets[-1] if carets else -1  # the text matched lies after the last ^ ...
    end = dollars[0] if dollars else len(branch)  # ... and before the first $
    kept: list[Expr] = []
    for index, item in enumerate(branch):
        if isinstance(item, str):
            continue
        if start < index < end:
            kept.append(item)
        elif not is_nullable(item):
            return None  # it would have to match text where an anchor allows none
    return seq(EMPTY if carets else any_text, *kept, EMPTY if dollars else any_text)


def pattern_to_expr(pattern: str, longest: int | None = None) -> Expr:
    """Grammar for the JSON string *content* (without quotes) of strings matching ``pattern``;
    ``longest``: unbounded quantifiers (``*``, ``+``, ``{n,}``) and the free text around an
    unanchored pattern repeat at most that often (a narrower language: the closing step's
    bounded grammar, ``schema.budget``)."""
    parser = _Parser(pattern, longest)
    branches = parser.alternation()
    if parser.peek() is not None:
        raise parser.error("unbalanced ')'")
    any_text = repeat(RuleRef("char"), 0, longest)
    options = [expr for branch in branches if (expr := _anchored(branch, any_text)) is not None]
    if not options:
        raise PatternError(
            f"no string can match the pattern {pattern!r} (see its ^ and $)", matches_nothing=True
        )
    return choice(*options)
