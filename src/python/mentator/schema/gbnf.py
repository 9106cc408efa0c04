"""JSON Schema → GBNF, for llama-server's ``grammar`` request field.

One converter serves ``/prompt`` with ``useGrammar`` *and* ``/check/gbnf``, so the check accepts
exactly the schemas that generation accepts (the original checked with a narrower converter
than it generated with).

What the grammar enforces and what it leaves to validation
-----------------------------------------------------------
The grammar steers generation; ``mentator.schema.validation`` checks the parsed answer afterwards
against the full schema. So a keyword the grammar cannot express is *ignored* when ignoring it
only widens the accepted language (validation still catches violations), and *refused* with
``SchemaToGrammarError`` when ignoring it would make the grammar reject valid answers or the
schema cannot be followed at all.

* objects: ``properties`` in the order given, ``required`` (optional properties may be absent),
  ``additionalProperties`` false / true / schema, ``patternProperties`` (a key of a pattern's
  language gets that pattern's value schema; a pattern beyond the regex subset lets any key
  through with that schema). Other keys follow the declared ones, in any order, at most
  ``maxProperties`` minus the number of required keys of them (validation checks the rest). As in
  llama.cpp, an object that lists ``properties`` but says nothing about ``additionalProperties``
  gets no other keys except pattern keys (a small model adds keys until its token limit
  otherwise); this rejects valid answers with undeclared keys, which
  ``"additionalProperties": true`` allows (and ``open_objects=True`` everywhere, as JSON Schema
  says: the soundness pass of bench/schema_soundness.py checks both). A required key that
  ``properties`` does not list takes the schema of the patterns it matches, else
  ``additionalProperties``, else (closed by that convention only) any value.
* no ``type``: each keyword constrains values of its own type only, as in JSON Schema
  (``{"properties": ...}`` also accepts ``5``, ``"x"``, ``[]``); give ``"type"`` to get only one.
* arrays: ``items``, ``prefixItems`` (and draft-7 tuple ``items`` + ``additionalItems``),
  ``minItems``, ``maxItems``.
* strings: ``enum``, ``const``, ``minLength``, ``maxLength``, ``format`` date, time, date-time,
  uuid, email (any text with an ``@``, as validation checks it), ipv4; ``pattern`` in the
  subset of ``mentator.schema.pattern``.
* numbers/integers: JSON number syntax (bounded digit counts); ``minimum >= 0`` drops the minus
  sign, other bounds and ``multipleOf`` are left to validation.
* ``boolean``, ``null``, ``enum``/``const`` of any JSON value, ``type`` lists, ``nullable: true``
  (OpenAPI), ``anyOf``/``oneOf`` (oneOf's "exactly one" is left to validation), ``allOf``
  (merged: keywords the grammar cannot intersect, such as two ``pattern`` values or two
  annotations, follow the first part, which only widens; two ``anyOf`` lists become the anyOf of
  their pairs up to 64), local ``$ref`` (``#``, ``#/$defs/...``, ``#/definitions/...``, any
  local pointer; recursion allowed unless it is left recursion), empty schema / ``true`` = any
  JSON value.
* ignored (validation checks them): ``minimum``/``maximum``/``exclusive*`` (except the sign rule),
  ``multipleOf``, ``uniqueItems``, ``contains``, ``minProperties`` (and ``maxProperties``
  beyond the bound on other keys), ``propertyNames``,
  ``dependentRequired``, ``dependentSchemas``, ``not``, ``if``/``then``/``else``, unknown formats,
  annotations and unknown keywords.
* ``unevaluatedProperties`` acts like ``additionalProperties`` of the merged (``allOf``) object,
  which is what it means there (when parts disagree, the wider value is kept); where
  ``if``/``then``/``else``, ``dependentSchemas`` or ``anyOf``/``oneOf`` branches may evaluate
  more keys, it is left to validation.
* ``$schema`` draft 4, 6 or 7: ``$ref`` overrides its siblings (2019-09 on: they apply too).
* unsatisfiable parts (see below) become a rule that never finishes and are pruned: an anyOf
  branch or optional property no value can satisfy is simply never generated.
* refused: remote ``$ref``, ``$dynamicRef``/``$recursiveRef``, anchor references,
  ``unevaluatedItems`` other than ``true``, unsupported ``pattern`` syntax, and a schema whose
  root no value can satisfy.

Refusals (``SchemaToGrammarError``) start with the JSON Pointer of the keyword refused
(``#/properties/a/$dynamicRef: ...``). A schema no value can satisfy (an ``enum`` without a
value of the declared type, ``allOf`` types that exclude each other, a required key that
``additionalProperties: false`` forbids, a required property that recurses without end, ...) is
refused as ``...: this schema is unsatisfiable (no value can be valid): ...``: no answer could
ever pass validation. Alternatives that can never be finished (an optional property whose schema
recurses without end) are pruned from the grammar, so the model cannot walk into them.

Size and depth: the converter builds rule bodies from a work queue and never recurses deeper
than a few levels per rule, whatever the schema's depth; ``ir.py`` keeps the grammar text
shallow for llama.cpp's recursive parser. Limits that remain are named in the refusal: regex
groups nested deeper than 50, chains of more than 5000 rules that start with one another,
more than 50 000 rules, more than 4 MiB of grammar text.

Whitespace (``whitespace``): ``"compact"`` (the default) allows nothing between tokens — the
answer is compact JSON. Every whitespace token a model may write is a token not spent on the
answer, and a small model at temperature 0 can write a newline before nearly every token and run
out of its budget (measured: docs/structured-output.md). ``"bounded"`` allows nothing, one
space, or one newline followed by at most 20 spaces/tabs — enough for pretty-printed JSON.
Nothing is allowed before or after the top-level value either way.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from mentator.schema.budget import Caps
from mentator.schema.ir import (
    EMPTY,
    MAX_COUNT,
    MAX_REPETITION,
    CharSet,
    Expr,
    GrammarError,
    NoFiniteTextError,
    RuleRef,
    chars,
    check_grammar,
    choice,
    collapse_aliases,
    hoist_deep,
    lit,
    optional,
    prune_unfinishable,
    render_checked,
    repeat,
    seq,
)
from mentator.schema.pattern import PatternError, pattern_to_expr
from mentator.schema.pointer import PointerError, follow, local_fragment

# What may stand between two JSON tokens (the module's text, "Whitespace").
Whitespace = Literal["compact", "bounded"]
WHITESPACE_MODES: tuple[Whitespace, ...] = ("compact", "bounded")

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "default",
        "examples",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "$anchor",
        "$defs",
        "definitions",
        "$vocabulary",
        "contentMediaType",
        "contentEncoding",
    }
)
_OBJECT_KEYWORDS = frozenset(
    {
        "properties",
        "patternProperties",
        "required",
        "additionalProperties",
        "unevaluatedProperties",
        "minProperties",
        "maxProperties",
        "propertyNames",
    }
)
_ARRAY_KEYWORDS = frozenset(
    {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"}
)
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER_KEYWORDS = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
)
_KEYWORDS_OF = {
    "object": _OBJECT_KEYWORDS,
    "array": _ARRAY_KEYWORDS,
    "string": _STRING_KEYWORDS,
    "number": _NUMBER_KEYWORDS,
}
# What a schema without "type" allows (number covers integer).
_UNTYPED_KINDS = ("object", "array", "string", "number", "boolean", "null")
# Keywords that may evaluate properties the grammar does not know of (unevaluatedProperties
# must not forbid those: see _object_body).
_EVALUATE_PROPERTIES_TOO = frozenset(
    {"if", "then", "else", "dependentSchemas", "dependencies", "anyOf", "oneOf"}
)
# Drafts before 2019-09 ignore every keyword beside "$ref" ("$ref" overrides its siblings).
_REF_OVERRIDES_SIBLINGS = re.compile(r"json-schema\.org/draft-0[3-7]/schema")
_REFUSED = {
    "$dynamicRef": "dynamic references are not supported; use a local $ref",
    "$recursiveRef": "recursive references ($recursiveRef) are not supported; use a local $ref",
}
_NOTHING = "nothing"  # the rule of unsatisfiable parts (see _Converter.nothing)
_PRODUCT_LIMIT = 64  # allOf of two anyOf lists becomes one anyOf of their pairs up to this size
_JSON_FORBIDDEN_RAW = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F))
_FORMATS = ("date", "time", "date-time", "uuid", "email", "ipv4")
_INLINE_MEMBERS = 6  # objects with more members get "rest" rules (see _Converter._members)
# Schema levels converted inline (anyOf in anyOf, const values in const values, ...) before the
# rest becomes a rule of its own, built later from the work queue: this bounds the converter's
# recursion whatever the schema's depth. Objects, arrays and $ref targets always get a rule.
_INLINE_DEPTH = 12
# allOf/$ref chains merged at one place (A = allOf[$ref B, ...], B = allOf[$ref C, ...], ...).
_MAX_MERGE_DEPTH = 64
# Runaway guard: rules a grammar may have (real-world schemas stay under a few thousand).
MAX_RULES = 50_000
# Largest grammar text sent to the engine (the biggest of JSONSchemaBench's 3000 is far below).
MAX_GRAMMAR_BYTES = 4 * 1024 * 1024


class SchemaToGrammarError(ValueError):
    """A schema (part) the converter cannot turn into a grammar.

    ``pointer``: the JSON Pointer (URI fragment form, ``#`` = the root) of the schema or keyword
    at fault; ``keyword``: the keyword refused (empty when none is to blame, e.g. ``false``);
    ``unsatisfiable``: no value at all can be valid there, so no answer could ever pass
    validation. The message starts with the keyword's own pointer, for instance
    ``#/properties/a/$dynamicRef: dynamic references are not supported ...`` or
    ``#/allOf: this schema is unsatisfiable (no value can be valid): types ...``.
    """

    def __init__(
        self,
        pointer: str,
        problem: str,
        *,
        keyword: str = "",
        unsatisfiable: bool = False,
        location: str | None = None,
    ) -> None:
        self.pointer = pointer or "#"
        self.problem = problem
        self.keyword = keyword
        self.unsatisfiable = unsatisfiable
        if location is None:
            named = f"/{_pointer_token(keyword)}"
            location = self.pointer
            if keyword and not location.endswith(named):
                location += named
        self.location = location
        verdict = "this schema is unsatisfiable (no value can be valid): " if unsatisfiable else ""
        super().__init__(f"{self.location}: {verdict}{problem}")


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _matches_type(value: object, type_name: str) -> bool:
    if type_name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    return _json_type_name(value) == type_name


def _pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NAME_JUNK = re.compile(r"[^A-Za-z0-9-]+")


class _Converter:
    def __init__(
        self,
        root: object,
        whitespace: Whitespace = "compact",
        *,
        open_objects: bool = False,
        bounded_values: Caps | None = None,
    ) -> None:
        self.root = root
        self.whitespace = whitespace
        self.open_objects = open_objects
        self.bounded_values = bounded_values
        declared = root.get("$schema") if isinstance(root, dict) else None
        self.ref_overrides = isinstance(declared, str) and bool(
            _REF_OVERRIDES_SIBLINGS.search(declared)
        )
        self.rules: dict[str, Expr] = {}
        self.taken: set[str] = {"root", _NOTHING, *self._PRIMITIVES}
        # The first unsatisfiable part met: such parts become _NOTHING (no value is valid
        # there), and if that leaves the whole schema without a valid value, this is why.
        self.unsatisfiable: SchemaToGrammarError | None = None
        self.ref_rules: dict[str, str] = {"#": "root"}
        self.key_rules: dict[frozenset[str], str] = {}  # see _key_not_in
        self.departures: dict[tuple[tuple[str, ...], bool], str] = {}  # see _departure
        # allOf results by content: a recursive $ref inside allOf yields the same merged schema
        # again one level down, and must become the same (recursive) rule, not a new copy.
        self.merged_rules: dict[str, str] = {}
        # Rule bodies still to build; see ``later``.
        self.pending: deque[Callable[[], None]] = deque()
        self.depth = 0  # inline conversion depth of the rule body being built

    # ------------------------------------------------------------ rule names and primitives

    def new_rule(self, hint: str) -> str:
        base = _NAME_JUNK.sub("-", hint).strip("-") or "rule"
        name, counter = base, 1
        while name in self.taken:
            counter += 1
            name = f"{base}-{counter}"
        self.taken.add(name)
        return name

    def use(self, name: str) -> RuleRef:
        """A reference to a shared primitive rule, defining it (and what it needs) on first use."""
        if name not in self.rules:
            self.rules[name] = EMPTY  # placeholder: primitives may refer to each other
            self.rules[name] = self._PRIMITIVES[name](self)
        return RuleRef(name)

    def ws(self) -> Expr:
        """What may stand between two JSON tokens: nothing (compact), or the ``ws`` rule."""
        return EMPTY if self.whitespace == "compact" else self.use("ws")

    def _ws(self) -> Expr:
        return repeat(choice(lit(" "), seq(lit("\n"), repeat(chars([" ", "\t"]), 0, 20))), 0, 1)

    def _char(self) -> Expr:
        return choice(
            CharSet(_JSON_FORBIDDEN_RAW, negated=True), seq(lit("\\"), self.use("escape"))
        )

    def _escape(self) -> Expr:
        hex_digit = chars([("0", "9"), ("a", "f"), ("A", "F")])
        return choice(
            chars(['"', "\\", "/", "b", "f", "n", "r", "t"]), seq(lit("u"), repeat(hex_digit, 4, 4))
        )

    def _digits(self) -> Expr:
        return choice(lit("0"), seq(chars([("1", "9")]), repeat(chars([("0", "9")]), 0, 15)))

    def _fraction_and_exponent(self) -> Expr:
        digit = chars([("0", "9")])
        return seq(
            optional(seq(lit("."), repeat(digit, 1, 16))),
            optional(seq(chars(["e", "E"]), optional(chars(["+", "-"])), repeat(digit, 1, 3))),
        )

    def _two_digits(self, first: tuple[str, str], second: tuple[str, str] = ("0", "9")) -> Expr:
        return seq(chars([first]), chars([second]))

    def _time(self) -> Expr:
        hour = choice(self._two_digits(("0", "1")), seq(lit("2"), chars([("0", "3")])))
        minute = self._two_digits(("0", "5"))
        second = choice(self._two_digits(("0", "5")), lit("60"))
        offset = choice(lit("Z"), lit("z"), seq(chars(["+", "-"]), hour, lit(":"), minute))
        fraction = optional(seq(lit("."), repeat(chars([("0", "9")]), 1, None)))  # RFC 3339: any
        return seq(hour, lit(":"), minute, lit(":"), second, fraction, offset)

    def _date(self) -> Expr:
        digit = chars([("0", "9")])
        month = choice(seq(lit("0"), chars([("1", "9")])), seq(lit("1"), chars([("0", "2")])))
        day = choice(
            seq(lit("0"), chars([("1", "9")])),
            seq(chars([("1", "2")]), digit),
            seq(lit("3"), chars([("0", "1")])),
        )
        return seq(repeat(digit, 4, 4), lit("-"), month, lit("-"), day)

    def _uuid(self) -> Expr:
        hex_digit = chars([("0", "9"), ("a", "f"), ("A", "F")])
        groups = [repeat(hex_digit, count, count) for count in (8, 4, 4, 4, 12)]
        return seq(
            groups[0],
            lit("-"),
            groups[1],
            lit("-"),
            groups[2],
            lit("-"),
            groups[3],
            lit("-"),
            groups[4],
        )

    def _email(self) -> Expr:
        # What validation accepts as an email (jsonschema: the string contains "@"): any
        # narrower form rejected valid addresses ("te~st@example.com", '"joe bloggs"@x.com',
        # "joe@[127.0.0.1]": the test suite's optional/format/email.json).
        rest = self.use("chars")
        return seq(rest, lit("@"), rest)

    def _ipv4(self) -> Expr:
        digit = chars([("0", "9")])
        octet = choice(
            seq(lit("25"), chars([("0", "5")])),
            seq(lit("2"), chars([("0", "4")]), digit),
            seq(lit("1"), digit, digit),
            seq(chars([("1", "9")]), digit),
            digit,
        )
        return seq(octet, lit("."), octet, lit("."), octet, lit("."), octet)

    def _members_of_generic(self, member: Expr, kind: str) -> Expr:
        """Members of a generic object or array, comma-separated: any number, or (bounded
        values) at most the caps' extra keys or items."""
        caps = self.bounded_values
        most = None if caps is None else caps.extra_keys if kind == "object" else caps.items
        if most == 0:
            return EMPTY
        more = None if most is None else most - 1
        return optional(seq(member, repeat(seq(lit(","), self.ws(), member), 0, more)))

    def _generic_object(self) -> Expr:
        ws = self.ws()
        member = seq(self.use("string"), ws, lit(":"), ws, self.use("value"), ws)
        return seq(lit("{"), ws, self._members_of_generic(member, "object"), lit("}"))

    def _generic_array(self) -> Expr:
        ws = self.ws()
        element = seq(self.use("value"), ws)
        return seq(lit("["), ws, self._members_of_generic(element, "array"), lit("]"))

    def _longest(self) -> int | None:
        """The most characters of a string (or key) the schema leaves unbounded (None: any)."""
        return None if self.bounded_values is None else self.bounded_values.string

    def _any_string(self) -> Expr:
        return seq(lit('"'), repeat(self.use("char"), 0, self._longest()), lit('"'))

    def _any_value(self) -> Expr:
        scalars = (self.use("string"), self.use("number"), self.use("boolean"), self.use("null"))
        if self.bounded_values is not None:  # a short scalar: nothing that nests or runs on
            return choice(*scalars)
        return choice(self.use("object"), self.use("array"), *scalars)

    _PRIMITIVES: dict[str, Callable[[_Converter], Expr]] = {
        "ws": _ws,
        "char": _char,
        "escape": _escape,
        "string": _any_string,
        # The rest of a key once it differs from every declared key (see _trie): one rule, not a
        # repetition per trie node (llama.cpp makes a rule of each repetition).
        "chars": lambda self: repeat(self.use("char"), 0, self._longest()),
        "escaped-chars": lambda self: seq(lit("\\"), self.use("escape"), self.use("chars")),
        "integer": lambda self: seq(optional(lit("-")), self._digits()),
        "integer-nonneg": lambda self: self._digits(),
        "number": lambda self: seq(
            optional(lit("-")), self._digits(), self._fraction_and_exponent()
        ),
        "number-nonneg": lambda self: seq(self._digits(), self._fraction_and_exponent()),
        "boolean": lambda self: choice(lit("true"), lit("false")),
        "null": lambda self: lit("null"),
        "value": _any_value,
        "object": _generic_object,
        "array": _generic_array,
        "date": _date,
        "time": _time,
        "date-time": lambda self: seq(self.use("date"), chars(["T", "t"]), self.use("time")),
        "uuid": _uuid,
        "email": _email,
        "ipv4": _ipv4,
    }

    # ------------------------------------------------------------ entry

    def convert_root(self) -> dict[str, Expr]:
        self.define("root", self.convert(self.root, "#", "root", target="root"))
        while self.pending:
            self.pending.popleft()()
            if len(self.rules) > MAX_RULES:
                raise SchemaToGrammarError(
                    "#", f"the schema needs more than {MAX_RULES} grammar rules (the limit)"
                )
        return self.rules

    def define(self, name: str, expr: Expr) -> None:
        if expr != RuleRef(name):
            self.rules[name] = expr

    def later(self, name: str, build: Callable[[], Expr]) -> RuleRef:
        """``RuleRef(name)`` now; the body comes from ``build()`` once the current body is done.

        The converter never descends into another rule's body from inside one: a schema nested
        ten thousand levels deep is ten thousand queued jobs, not ten thousand stack frames.
        """
        self.rules[name] = EMPTY  # placeholder: the name is defined from now on

        def job() -> None:
            try:
                body = build()
            except SchemaToGrammarError as error:
                body = self.nothing(error)
            self.define(name, body)

        self.pending.append(job)
        return RuleRef(name)

    def nothing(self, error: SchemaToGrammarError) -> Expr:
        """What an unsatisfiable part becomes: a rule that never finishes, which
        ``ir.prune_unfinishable`` removes with every alternative that needs it (an anyOf branch,
        an optional property, array items...). Other refusals are raised again."""
        if not error.unsatisfiable:
            raise error
        if self.unsatisfiable is None:
            self.unsatisfiable = error
        self.rules[_NOTHING] = RuleRef(_NOTHING)
        return RuleRef(_NOTHING)

    def convert(
        self, schema: object, pointer: str, hint: str, *, target: str | None = None
    ) -> Expr:
        """Grammar for ``schema``; object/array rules are written into ``target`` when given."""
        if self.depth >= _INLINE_DEPTH:
            name = target or self.new_rule(hint)
            return self.later(name, lambda: self.convert(schema, pointer, name, target=name))
        self.depth += 1
        try:
            return self._convert(schema, pointer, hint, target)
        except SchemaToGrammarError as error:
            return self.nothing(error)
        finally:
            self.depth -= 1

    def _convert(self, schema: object, pointer: str, hint: str, target: str | None) -> Expr:
        if schema is True:
            return self.use("value")
        if schema is False:
            raise SchemaToGrammarError(
                pointer,
                "the schema false matches no value, but a value is required here",
                unsatisfiable=True,
            )
        if not isinstance(schema, dict):
            raise SchemaToGrammarError(
                pointer, f"a schema must be an object or a boolean, got {_json_type_name(schema)}"
            )
        for keyword, reason in _REFUSED.items():
            if keyword in schema:
                raise SchemaToGrammarError(pointer, reason, keyword=keyword)
        if "unevaluatedItems" in schema and schema["unevaluatedItems"] is not True:
            raise SchemaToGrammarError(
                pointer,
                "unevaluatedItems is not supported; use items / prefixItems instead",
                keyword="unevaluatedItems",
            )
        if "$ref" in schema:
            return self._ref(schema, pointer)
        if "allOf" in schema:
            return self._merged(self._flatten(schema, pointer), pointer, hint, target)
        if "anyOf" in schema or "oneOf" in schema:
            return self._any_of(schema, pointer, hint)
        if "const" in schema:
            return self._literal_value(schema["const"])
        if "enum" in schema:
            return self._enum(schema, pointer)
        types = self._types(schema, pointer)
        if types is None:
            return self.use("value")
        single_target = target if len(types) == 1 else None
        return choice(
            *(
                self._typed(kind, schema, pointer, hint, single_target)
                if self._constrains(kind, schema)
                else self.use(kind)
                for kind in types
            )
        )

    def _constrains(self, kind: str, schema: dict[str, Any]) -> bool:
        """Whether ``schema`` says anything about values of type ``kind``: without ``type``,
        the keywords of the other types leave them free (the generic rule)."""
        if "type" in schema:
            return True
        return bool(set(schema) & _KEYWORDS_OF.get(kind, frozenset()))

    # ------------------------------------------------------------ types

    def _types(self, schema: dict[str, Any], pointer: str) -> list[str] | None:
        declared = schema.get("type")
        if declared is None:
            keys = set(schema)
            inferred = [
                kind
                for kind, keywords in (
                    ("object", _OBJECT_KEYWORDS),
                    ("array", _ARRAY_KEYWORDS),
                    ("string", _STRING_KEYWORDS),
                    ("number", _NUMBER_KEYWORDS),
                )
                if keys & keywords
            ]
            if not inferred:
                return None
            # JSON Schema: each keyword constrains values of its own type only, so a value of
            # any other type is valid too ({"properties": ...} also accepts 5, "x", [], null).
            types = [*inferred, *(kind for kind in _UNTYPED_KINDS if kind not in inferred)]
        else:
            listed = declared if isinstance(declared, list) else [declared]
            for item in listed:
                if item not in JSON_TYPES:
                    raise SchemaToGrammarError(
                        pointer + "/type",
                        f"unknown type {json.dumps(item)} "
                        f"(expected one of {', '.join(JSON_TYPES)})",
                        keyword="type",
                    )
            if not listed:
                raise SchemaToGrammarError(
                    pointer + "/type",
                    "an empty type list matches no value",
                    keyword="type",
                    unsatisfiable=True,
                )
            types = list(dict.fromkeys(listed))
        if schema.get("nullable") is True and "null" not in types:
            types.append("null")
        if "number" in types and "integer" in types:
            types.remove("integer")  # every integer is a number
        return types

    def _typed(
        self, kind: str, schema: dict[str, Any], pointer: str, hint: str, target: str | None
    ) -> Expr:
        if kind == "object":
            return self._object(schema, pointer, hint, target)
        if kind == "array":
            return self._array(schema, pointer, hint, target)
        if kind == "string":
            return self._string(schema, pointer)
        if kind in ("number", "integer"):
            non_negative = any(
                _is_number(schema.get(key)) and schema[key] >= 0
                for key in ("minimum", "exclusiveMinimum")
            )
            return self.use(f"{kind}-nonneg" if non_negative else kind)
        return self.use(kind)  # boolean, null

    def _count(
        self, schema: dict[str, Any], key: str, pointer: str, default: int | None
    ) -> int | None:
        value = schema.get(key, default)
        if value is None:
            return None
        if not _is_number(value) or value < 0 or not float(value).is_integer():
            raise SchemaToGrammarError(
                f"{pointer}/{key}",
                f"{key} must be a non-negative integer, got {json.dumps(value)}",
                keyword=key,
            )
        return int(value)

    def _string(self, schema: dict[str, Any], pointer: str) -> Expr:
        quote = lit('"')
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise SchemaToGrammarError(
                    pointer + "/pattern", "pattern must be a string", keyword="pattern"
                )
            try:
                content = pattern_to_expr(pattern, self._longest())
            except PatternError as error:
                raise SchemaToGrammarError(
                    pointer + "/pattern",
                    str(error),
                    keyword="pattern",
                    unsatisfiable=error.matches_nothing and schema.get("type") == "string",
                ) from error
            self.use("char")
            return seq(quote, content, quote)
        if schema.get("format") in _FORMATS:
            return seq(quote, self.use(str(schema["format"])), quote)
        low = self._count(schema, "minLength", pointer, 0) or 0
        high = self._count(schema, "maxLength", pointer, None)
        if high is not None and high < low:
            raise SchemaToGrammarError(
                pointer,
                f"maxLength {high} is smaller than minLength {low}",
                keyword="maxLength",
                unsatisfiable=True,
            )
        if low > MAX_COUNT:
            raise SchemaToGrammarError(
                pointer + "/minLength",
                f"minLength above {MAX_COUNT} is not supported "
                f"(llama.cpp's grammars refuse {MAX_REPETITION} repetitions or more)",
                keyword="minLength",
            )
        if low == 0 and high is None:
            return self.use("string")
        return seq(quote, repeat(self.use("char"), low, high), quote)

    # ------------------------------------------------------------ objects

    def _object(self, schema: dict[str, Any], pointer: str, hint: str, target: str | None) -> Expr:
        name = target or self.new_rule(hint)
        return self.later(name, lambda: self._object_body(schema, pointer, name))

    def _object_body(self, schema: dict[str, Any], pointer: str, name: str) -> Expr:
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise SchemaToGrammarError(
                pointer + "/properties", "properties must be an object", keyword="properties"
            )
        patterns = schema.get("patternProperties", {})
        if not isinstance(patterns, dict):
            raise SchemaToGrammarError(
                pointer + "/patternProperties",
                "patternProperties must be an object",
                keyword="patternProperties",
            )
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
            raise SchemaToGrammarError(
                pointer + "/required", "required must be an array of strings", keyword="required"
            )
        # allOf is merged before we get here, so unevaluatedProperties means what
        # additionalProperties would mean for the merged property list — unless keywords the
        # grammar does not follow (if/then/else, dependentSchemas, ...) may evaluate more keys:
        # then it is left to validation (wider).
        unevaluated = schema.get("unevaluatedProperties")
        if unevaluated is not None and set(schema) & _EVALUATE_PROPERTIES_TOO:
            unevaluated = True  # not closed by the convention either: the schema said something
        additional = schema.get("additionalProperties", unevaluated)
        # Only additionalProperties: false proves a key absent from properties is forbidden;
        # unevaluatedProperties also sees keys that if/then, dependentSchemas... evaluate.
        explicitly_closed = schema.get("additionalProperties") is False
        if additional is None:
            # JSON Schema's default allows other keys (open_objects). By default, as in
            # llama.cpp, an object that lists properties and says nothing about others gets no
            # others except pattern keys: measured on SmolLM2, open objects let the model add
            # keys until its token limit (3 of the integration tests cut off). This rejects
            # valid answers with undeclared keys; "additionalProperties": true opens an object.
            additional = self.open_objects or "properties" not in schema
        ws = self.ws()

        def key_value(key: str, value: Expr) -> Expr:
            return seq(lit(json.dumps(key, ensure_ascii=False)), ws, lit(":"), ws, value, ws)

        def pattern_pointer(pattern: str) -> str:
            return f"{pointer}/patternProperties/{_pointer_token(pattern)}"

        entries: list[tuple[str, Expr, bool]] = []
        for key, sub_schema in properties.items():
            sub_pointer = f"{pointer}/properties/{_pointer_token(key)}"
            if sub_schema is False:
                if key in required:
                    raise SchemaToGrammarError(
                        sub_pointer,
                        f"property {key!r} is required but its schema is false",
                        keyword="required",
                        unsatisfiable=True,
                        location=sub_pointer,
                    )
                continue  # the property may never appear
            value = self.convert(sub_schema, sub_pointer, f"{name}-{key}")
            entries.append((key, key_value(key, value), key in required))
        for key in dict.fromkeys(required):
            if key in properties:
                continue
            # The value of a required key that properties does not list: what the patterns it
            # matches allow, else what additionalProperties allows (any of them: wider is safe).
            matching = [
                pattern
                for pattern, sub_schema in patterns.items()
                if sub_schema is not False and _may_match(pattern, key)
            ]
            options = [
                self.convert(patterns[pattern], pattern_pointer(pattern), f"{name}-{key}")
                for pattern in matching
            ]
            if not matching and additional is not False:
                options.append(
                    self.convert(additional, pointer + "/additionalProperties", f"{name}-{key}")
                )
            elif not matching and not explicitly_closed:
                options.append(self.use("value"))  # closed by the convention only
            if not options:
                raise SchemaToGrammarError(
                    pointer + "/required",
                    f"required property {key!r} is not in properties "
                    "and additionalProperties is false",
                    keyword="required",
                    unsatisfiable=explicitly_closed,
                )
            entries.append((key, key_value(key, choice(*options)), True))
        branches: list[Expr] = []
        for index, (pattern, sub_schema) in enumerate(patterns.items()):
            if sub_schema is False:
                continue
            value = self.convert(sub_schema, pattern_pointer(pattern), f"{name}-pattern-{index}")
            branches.append(
                seq(lit('"'), self._key_matching(pattern), lit('"'), ws, lit(":"), ws, value, ws)
            )
        if additional is not False:
            value = self.convert(
                additional, pointer + "/additionalProperties", f"{name}-additional"
            )
            key_text = self._key_not_in([key for key, _, _ in entries])
            branches.append(seq(lit('"'), key_text, lit('"'), ws, lit(":"), ws, value, ws))
        extra: Expr | None = None
        # maxProperties bounds the other keys: a valid object has its required keys, so at
        # most maxProperties minus their number others (optional declared keys are not
        # counted, which only widens). Large bounds stay unbounded (llama.cpp's repetition
        # limit; validation checks them).
        most = self._count(schema, "maxProperties", pointer, None)
        extra_most = None if most is None else max(0, most - sum(1 for *_, n in entries if n))
        if branches and extra_most != 0:
            extra_name = self.new_rule(f"{name}-additional-kv")
            self.rules[extra_name] = choice(*branches)
            extra = RuleRef(extra_name)
        return seq(lit("{"), ws, self._members(name, entries, extra, extra_most), lit("}"))

    def _key_matching(self, pattern: object) -> Expr:
        """JSON string content of keys matching a patternProperties pattern; any key when the
        pattern is beyond the regex subset (wider: validation checks the value's schema)."""
        if isinstance(pattern, str):
            try:
                content = pattern_to_expr(pattern, self._longest())
            except PatternError:
                pass
            else:
                self.use("char")
                return content
        return repeat(self.use("char"), 0, self._longest())

    def _members(
        self,
        name: str,
        entries: list[tuple[str, Expr, bool]],
        extra: Expr | None,
        extra_most: int | None = None,
    ) -> Expr:
        """Members in the given order; optional ones may be missing, commas only between members;
        then up to ``extra_most`` (None: any number of) ``extra`` members.

        Every way of leaving out leading optional members needs its own copy of "the rest", so
        for larger objects "the rest from member i on" becomes a rule and the size stays linear.
        """
        comma = seq(lit(","), self.ws())
        count = len(entries)
        extra_tail: Expr = EMPTY
        extra_first: Expr = EMPTY  # an object whose first member is an extra one
        if extra is not None:
            extra_tail = repeat(seq(comma, extra), 0, extra_most)
            rest = None if extra_most is None else extra_most - 1
            extra_first = optional(seq(extra, repeat(seq(comma, extra), 0, rest)))

        def head(index: int) -> Expr:
            _, kv, needed = entries[index]
            return seq(comma, kv) if needed else optional(seq(comma, kv))

        # after[i]: what may follow once a member before i was written (built from the end, in a
        # loop: objects with thousands of properties exist).
        after: list[Expr] = [EMPTY] * (count + 1)
        after[count] = extra_tail
        if count <= _INLINE_MEMBERS:
            for index in range(count - 1, 0, -1):
                after[index] = seq(head(index), after[index + 1])
        else:
            for index in range(count - 1, 0, -1):
                rule = self.new_rule(f"{name}-rest-{index}")
                self.rules[rule] = seq(head(index), after[index + 1])
                after[index] = RuleRef(rule)
        # The first member written is any member up to (and including) the first required one.
        options: list[Expr] = []
        for index, (_, kv, needed) in enumerate(entries):
            options.append(seq(kv, after[index + 1]))
            if needed:
                break
        else:
            options.append(extra_first)
        return choice(*options)

    def _key_not_in(self, keys: list[str]) -> Expr:
        """JSON string content of any key except the given ones (declared keys are not repeated)."""
        char = self.use("char")
        if not keys:
            return repeat(char, 0, None)
        encoded = frozenset(json.dumps(key, ensure_ascii=False)[1:-1] for key in keys)
        # Objects with the same keys (items of a list, a $ref used twice...) share one rule.
        name = self.key_rules.get(encoded)
        if name is None:
            name = self.new_rule("other-key")
            self.key_rules[encoded] = name
            self.rules[name] = self._trie(set(encoded), char)
        return RuleRef(name)

    def _trie(self, words: set[str], char: RuleRef) -> Expr:
        """Any JSON string content except the ``words`` (JSON-encoded keys), as a tree over
        their characters; built bottom-up in a loop, as keys may be thousands of characters."""
        rest = self.use("chars")
        ends = object()  # marks "a word ends here"
        root: dict[object, Any] = {}
        for word in words:
            node = root
            for letter in word:
                node = node.setdefault(letter, {})
            node[ends] = True
        built: dict[int, Expr] = {}
        stack: list[tuple[dict[object, Any], bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            children = sorted(key for key in node if isinstance(key, str))
            if not children_done:
                stack.append((node, True))
                stack.extend((node[child], False) for child in children)
                continue
            options: list[Expr] = [
                seq(lit(child), built.pop(id(node[child]))) for child in children
            ]
            options.append(self._departure(tuple(children), ends not in node, rest))
            built[id(node)] = choice(*options)
        return built[id(root)]

    def _departure(self, children: tuple[str, ...], may_end: bool, rest: Expr) -> RuleRef:
        """Leaving the key tree at a node: a character none of ``children`` starts, then any
        rest (or the key ends here, when no declared key does). One rule per distinct case,
        shared by every tree of the grammar: most nodes are alike (one child, no key ending)."""
        key = (children, may_end)
        name = self.departures.get(key)
        if name is None:
            excluded = [(ord(child), ord(child)) for child in children]
            excluded += list(_JSON_FORBIDDEN_RAW)
            options: list[Expr] = [seq(CharSet(tuple(sorted(excluded)), negated=True), rest)]
            if "\\" not in children:
                options.append(self.use("escaped-chars"))
            if may_end:
                options.append(EMPTY)
            name = self.new_rule("key-departs")
            self.departures[key] = name
            self.rules[name] = choice(*options)
        return RuleRef(name)

    # ------------------------------------------------------------ arrays

    def _array(self, schema: dict[str, Any], pointer: str, hint: str, target: str | None) -> Expr:
        name = target or self.new_rule(hint)
        return self.later(name, lambda: self._array_body(schema, pointer, name))

    def _array_body(self, schema: dict[str, Any], pointer: str, name: str) -> Expr:
        items = schema.get("items")
        if "prefixItems" in schema:
            prefix_schemas, prefix_key = schema["prefixItems"], "prefixItems"
            rest_schema, rest_key = (True if items is None else items), "items"
        elif isinstance(items, list):
            prefix_schemas, prefix_key = items, "items"
            rest_schema, rest_key = schema.get("additionalItems", True), "additionalItems"
        else:
            prefix_schemas, prefix_key = [], "prefixItems"
            rest_schema, rest_key = (True if items is None else items), "items"
        if not isinstance(prefix_schemas, list):
            raise SchemaToGrammarError(
                f"{pointer}/{prefix_key}",
                f"{prefix_key} must be an array of schemas",
                keyword=prefix_key,
            )
        low = self._count(schema, "minItems", pointer, 0) or 0
        cap = self._count(schema, "maxItems", pointer, None)
        if low > MAX_COUNT:
            raise SchemaToGrammarError(
                pointer + "/minItems",
                f"minItems above {MAX_COUNT} is not supported "
                f"(llama.cpp's grammars refuse {MAX_REPETITION} repetitions or more)",
                keyword="minItems",
            )
        prefix: list[Expr] = []
        for index, item_schema in enumerate(prefix_schemas):
            if item_schema is False:
                cap = index if cap is None else min(cap, index)
                break
            prefix.append(
                self.convert(item_schema, f"{pointer}/{prefix_key}/{index}", f"{name}-{index}")
            )
        rest: Expr | None = None
        if rest_schema is False:
            cap = len(prefix) if cap is None else min(cap, len(prefix))
        else:
            rest = self.convert(rest_schema, f"{pointer}/{rest_key}", f"{name}-item")
        if cap is not None and low > cap:
            raise SchemaToGrammarError(
                pointer,
                f"minItems {low} cannot be met: at most {cap} items are allowed",
                keyword="minItems",
                unsatisfiable=True,
            )
        ws = self.ws()
        comma = seq(lit(","), ws)

        def element(index: int) -> Expr:
            schema_expr = prefix[index] if index < len(prefix) else rest
            assert schema_expr is not None  # guaranteed by the cap computed above
            return seq(schema_expr, ws)

        # tail[i]: the elements after the first i (built from the end, in a loop: tuples with
        # thousands of prefixItems would otherwise recurse that deep).
        start = max(1, len(prefix) if cap is None else min(cap, len(prefix)))
        if cap is not None and start >= cap:
            tail: Expr = EMPTY
        else:  # start >= len(prefix): any number of further items, within the bounds
            high = None if cap is None else cap - start
            tail = repeat(seq(comma, element(start)), max(0, low - start), high)
        for index in range(start - 1, 0, -1):
            more = seq(comma, element(index), tail)
            tail = more if index < low else optional(more)
        body = EMPTY if cap == 0 else seq(element(0), tail)
        if low == 0:
            body = optional(body)
        return seq(lit("["), ws, body, lit("]"))

    # ------------------------------------------------------------ const / enum

    def _literal_value(self, value: object, depth: int = 0) -> Expr:
        if depth >= _INLINE_DEPTH and isinstance(value, (dict, list)) and value:
            return self.later(self.new_rule("value"), lambda: self._literal_value(value))
        ws = self.ws()
        if isinstance(value, dict):
            members = [
                seq(
                    lit(json.dumps(key, ensure_ascii=False)),
                    ws,
                    lit(":"),
                    ws,
                    self._literal_value(item, depth + 1),
                    ws,
                )
                for key, item in value.items()
            ]
            return seq(lit("{"), ws, self._joined(members), lit("}"))
        if isinstance(value, list):
            elements = [seq(self._literal_value(item, depth + 1), ws) for item in value]
            return seq(lit("["), ws, self._joined(elements), lit("]"))
        return lit(json.dumps(value, ensure_ascii=False))

    def _joined(self, parts: list[Expr]) -> Expr:
        if not parts:
            return EMPTY
        comma = seq(lit(","), self.ws())
        joined = parts[0]
        for part in parts[1:]:
            joined = seq(joined, comma, part)
        return joined

    def _enum(self, schema: dict[str, Any], pointer: str) -> Expr:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            if isinstance(values, list):
                raise SchemaToGrammarError(
                    pointer + "/enum",
                    "an empty enum matches no value",
                    keyword="enum",
                    unsatisfiable=True,
                )
            raise SchemaToGrammarError(pointer + "/enum", "enum must be an array", keyword="enum")
        types = self._types({"type": schema["type"]}, pointer) if "type" in schema else None
        if types is not None:
            values = [
                value for value in values if any(_matches_type(value, kind) for kind in types)
            ]
            if not values:
                raise SchemaToGrammarError(
                    pointer + "/enum",
                    f"no enum value has the declared type {json.dumps(schema['type'])}",
                    keyword="enum",
                    unsatisfiable=True,
                )
        return choice(*(self._literal_value(value) for value in values))

    # ------------------------------------------------------------ $ref, allOf, anyOf

    def _resolve(self, ref: object, pointer: str) -> tuple[object, str]:
        try:
            return follow(self.root, ref), "#" + local_fragment(ref)
        except PointerError as error:
            message = {
                "not a string": "$ref must be a string",
                "remote": f"only local references ('#/...') are supported, got {ref!r}",
                "anchor": f"anchor references like {ref!r} are not supported",
                "missing": f"$ref {ref!r} points to nothing in this schema",
            }[error.problem]
            raise SchemaToGrammarError(pointer + "/$ref", message, keyword="$ref") from None

    def _ref(self, schema: dict[str, Any], pointer: str) -> Expr:
        ref = schema["$ref"]
        siblings = {
            key: value for key, value in schema.items() if key != "$ref" and key not in ANNOTATIONS
        }
        if siblings and not self.ref_overrides:
            # Since draft 2019-09 keywords next to $ref apply too: treat it as allOf.
            merged = self._flatten({"allOf": [{"$ref": ref}, siblings]}, pointer)
            return self._merged(merged, pointer, "ref", None)
        target, target_pointer = self._resolve(ref, pointer)
        key = target_pointer
        if key in self.ref_rules:
            return RuleRef(self.ref_rules[key])
        last = target_pointer.rsplit("/", 1)[-1] or "ref"
        name = self.new_rule(last)
        self.ref_rules[key] = name
        return self.later(name, lambda: self.convert(target, target_pointer, name, target=name))

    def _merged(self, merged: dict[str, Any], pointer: str, hint: str, target: str | None) -> Expr:
        """The rule for an allOf's merged schema, one per distinct merged schema."""
        key = json.dumps(merged, sort_keys=True)
        known = self.merged_rules.get(key)
        if known is not None:
            return RuleRef(known)
        name = target or self.new_rule(hint)
        self.merged_rules[key] = name
        return self.later(name, lambda: self.convert(merged, pointer, name, target=name))

    def _flatten(
        self, schema: object, pointer: str, through: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """``schema`` as one dict with its ``$ref`` and ``allOf`` merged in (for allOf merging).

        ``through``: the $ref targets being merged at this place; meeting one again means the
        schema contains itself without any instance in between, which no validator can evaluate.
        """
        if len(through) > _MAX_MERGE_DEPTH:
            raise SchemaToGrammarError(
                pointer,
                f"allOf/$ref chains deeper than {_MAX_MERGE_DEPTH} are not supported",
                keyword="allOf",
            )
        if schema is True:
            return {}
        if schema is False:
            raise SchemaToGrammarError(
                pointer,
                "allOf contains the schema false, which matches no value",
                unsatisfiable=True,
            )
        if not isinstance(schema, dict):
            raise SchemaToGrammarError(
                pointer, f"a schema must be an object or a boolean, got {_json_type_name(schema)}"
            )
        result = {key: value for key, value in schema.items() if key not in ("$ref", "allOf")}
        if "$ref" in schema and self.ref_overrides:
            target, target_pointer = self._resolve(schema["$ref"], pointer)
            if target_pointer in through:
                raise SchemaToGrammarError(
                    pointer + "/$ref",
                    f"$ref {schema['$ref']!r} refers to itself through $ref alone: the schema "
                    "is defined by itself and cannot be evaluated",
                    keyword="$ref",
                )
            return self._flatten(target, target_pointer, (*through, target_pointer))
        if "$ref" in schema:
            target, target_pointer = self._resolve(schema["$ref"], pointer)
            if target_pointer in through:
                raise SchemaToGrammarError(
                    pointer + "/$ref",
                    f"$ref {schema['$ref']!r} refers to a schema that includes this one through "
                    "allOf/$ref alone: the schema is defined by itself and cannot be evaluated",
                    keyword="$ref",
                )
            flat_target = self._flatten(target, target_pointer, (*through, target_pointer))
            result = self._merge(flat_target, result, pointer)
        parts = schema.get("allOf", [])
        if not isinstance(parts, list) or ("allOf" in schema and not parts):
            raise SchemaToGrammarError(
                pointer + "/allOf", "allOf must be a non-empty array", keyword="allOf"
            )
        for index, part in enumerate(parts):
            result = self._merge(
                result, self._flatten(part, f"{pointer}/allOf/{index}", through), pointer
            )
        return result

    def _merge(self, first: dict[str, Any], second: dict[str, Any], pointer: str) -> dict[str, Any]:
        result = dict(first)
        for key, value in second.items():
            if key not in result or result[key] == value:
                result[key] = value
                continue
            current = result[key]
            if key in ANNOTATIONS:
                continue
            if key == "properties" and isinstance(current, dict) and isinstance(value, dict):
                merged = dict(current)
                for name, sub in value.items():
                    merged[name] = _conjunction(merged[name], sub) if name in merged else sub
                result[key] = merged
            elif key == "required" and isinstance(current, list) and isinstance(value, list):
                result[key] = current + [name for name in value if name not in current]
            elif key == "type":
                result[key] = self._intersect_types(current, value, pointer)
            elif key == "enum" and isinstance(current, list) and isinstance(value, list):
                common = [item for item in current if item in value]
                if not common:
                    raise SchemaToGrammarError(
                        pointer,
                        "the enum lists of allOf have no value in common",
                        keyword="allOf",
                        unsatisfiable=True,
                    )
                result[key] = common
            elif (
                key in ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum")
                and _is_number(current)
                and _is_number(value)
            ):
                result[key] = max(current, value)
            elif (
                key in ("maximum", "maxLength", "maxItems", "maxProperties", "exclusiveMaximum")
                and _is_number(current)
                and _is_number(value)
            ):
                result[key] = min(current, value)
            elif key == "unevaluatedProperties":
                # An inner unevaluatedProperties evaluates every key it sees, so an outer one
                # no longer applies: which one is inner is lost in merging, so keep the wider.
                if current is False:
                    result[key] = value
                elif value is not False:
                    result[key] = True
            elif key in (
                "items",
                "additionalProperties",
                "additionalItems",
                "propertyNames",
                "contains",
            ):
                if current is False or value is False:
                    result[key] = False
                elif current is True:
                    result[key] = value
                elif value is not True:
                    result[key] = _conjunction(current, value)
            elif (
                key == "patternProperties" and isinstance(current, dict) and isinstance(value, dict)
            ):
                merged = dict(current)
                for name, sub in value.items():
                    merged[name] = _conjunction(merged[name], sub) if name in merged else sub
                result[key] = merged
            elif (
                key in ("anyOf", "oneOf") and isinstance(current, list) and isinstance(value, list)
            ):
                # allOf[anyOf A, anyOf B] is anyOf of the pairs; past the limit keep A (wider).
                if len(current) * len(value) <= _PRODUCT_LIMIT:
                    result[key] = [_conjunction(a, b) for a in current for b in value]
            elif key == "const":
                raise SchemaToGrammarError(
                    pointer,
                    "the const values of allOf differ",
                    keyword="allOf",
                    unsatisfiable=True,
                )
            elif key == "pattern" and not _readable_pattern(current) and _readable_pattern(value):
                result[key] = value
            # Anything else (a second pattern or format, keywords the grammar leaves to
            # validation, unknown keywords): the grammar follows the first value only, which
            # only widens it; validation checks the answer against every part.
        return result

    def _intersect_types(self, first: object, second: object, pointer: str) -> list[str]:
        def as_set(value: object) -> set[str]:
            names = set(value if isinstance(value, list) else [value])
            return names | {"integer"} if "number" in names else names

        common = as_set(first) & as_set(second)
        if "number" in common:
            common.discard("integer")
        if not common:
            raise SchemaToGrammarError(
                pointer,
                f"allOf: types {json.dumps(first)} and {json.dumps(second)} exclude each other",
                keyword="allOf",
                unsatisfiable=True,
            )
        return [kind for kind in JSON_TYPES if kind in common]

    def _any_of(self, schema: dict[str, Any], pointer: str, hint: str) -> Expr:
        # With both, oneOf stays in the base that every anyOf branch is merged with.
        keyword = "anyOf" if "anyOf" in schema else "oneOf"
        branches = schema[keyword]
        if not isinstance(branches, list) or not branches:
            raise SchemaToGrammarError(
                f"{pointer}/{keyword}",
                f"{keyword} must be a non-empty array",
                keyword=keyword,
                unsatisfiable=isinstance(branches, list),
            )
        # unevaluatedProperties also sees the keys of every branch that matches, which merging
        # one branch at a time cannot know: it is left to validation here (wider).
        base = {key: value for key, value in schema.items() if key != keyword}
        if "unevaluatedProperties" in base:
            base["unevaluatedProperties"] = True
        constrained = any(key not in ANNOTATIONS for key in base)
        options: list[Expr] = []
        for index, branch in enumerate(branches):
            if branch is False:
                continue
            branch_pointer = f"{pointer}/{keyword}/{index}"
            branch_schema = {"allOf": [base, branch]} if constrained else branch
            options.append(self.convert(branch_schema, branch_pointer, f"{hint}-{index}"))
        if not options:
            raise SchemaToGrammarError(
                f"{pointer}/{keyword}",
                f"every {keyword} branch is false",
                keyword=keyword,
                unsatisfiable=True,
            )
        return choice(*options)


def _readable_pattern(pattern: object) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        pattern_to_expr(pattern)
    except PatternError:
        return False
    return True


def _may_match(pattern: str, key: str) -> bool:
    """Whether ``key`` matches ``pattern`` (Python's regular expressions for ECMA-262's; when
    Python cannot read the pattern, assume it may)."""
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return True


def _conjunction(first: object, second: object) -> object:
    """``{"allOf": [first, second]}``, flattened and without repeats.

    Keeping conjunctions flat matters for recursive schemas: merging a recursive $ref with
    something else must give the same schema at every level (then ``_merged`` reuses its rule),
    not ``allOf[allOf[allOf[...]]]`` growing one level per level.
    """
    parts: list[object] = []
    seen: set[str] = set()
    for item in (first, second):
        nested = (
            isinstance(item, dict) and set(item) == {"allOf"} and isinstance(item["allOf"], list)
        )
        for part in item["allOf"] if nested else [item]:  # type: ignore[index]
            key = json.dumps(part, sort_keys=True)
            if part is not True and key not in seen:
                seen.add(key)
                parts.append(part)
    if not parts:
        return True
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def schema_to_gbnf(
    schema: object,
    whitespace: Whitespace = "compact",
    *,
    open_objects: bool = False,
    bounded_values: Caps | None = None,
) -> str:
    """GBNF text for llama-server's ``grammar`` field; raises ``SchemaToGrammarError``.

    ``schema`` is the parsed JSON Schema (a dict or a boolean); ``whitespace`` what may stand
    between JSON tokens (see the module's text); ``open_objects``: objects without
    ``additionalProperties`` accept other keys, as JSON Schema says (see ``_object_body``);
    ``bounded_values``: a value of any type is a short scalar and a generic object or array
    has few members, by these caps (the closing step's grammar, ``schema.budget``: it only
    narrows).
    """
    converter = _Converter(
        schema, whitespace, open_objects=open_objects, bounded_values=bounded_values
    )
    rules = collapse_aliases(hoist_deep(converter.convert_root()))
    try:
        rules = prune_unfinishable(rules)
        check_grammar(rules)
    except NoFiniteTextError as error:
        cause = converter.unsatisfiable
        if cause is not None:
            raise cause from error
        raise SchemaToGrammarError("#", str(error), unsatisfiable=True) from error
    except GrammarError as error:
        raise SchemaToGrammarError(
            "#", f"the schema leads to an unusable grammar: {error}"
        ) from error
    text = render_checked(rules)
    if len(text.encode()) > MAX_GRAMMAR_BYTES:
        raise SchemaToGrammarError(
            "#",
            f"the grammar would be {len(text.encode()) / 2**20:.1f} MiB, over the "
            f"{MAX_GRAMMAR_BYTES // 2**20} MiB limit",
        )
    return text
