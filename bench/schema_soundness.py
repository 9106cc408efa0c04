"""Benchmark (prints; exits 1 on a soundness failure): the converter against the official
JSON-Schema-Test-Suite, keyword by keyword.

Each case of ``../shared/json-schema-test-suite/tests/<draft>/*.json`` (read in place, never
copied into the repository; drafts 2020-12 and 7, ``optional/`` left out) goes through what
``/check/gbnf`` does: the schema is checked against its draft's meta-schema, then converted to
GBNF, in both whitespace modes (``compact``, the default, and ``bounded``). For every case the
converter accepts, each test instance is written as JSON and read by the test-only recogniser
(``mentator_testing.gbnf_recogniser``, llama.cpp's grammar rules):

* a **valid** instance must be accepted by the grammar (else the grammar forbids a right answer)
  and by validation (``schema/validation.py``, which checks every answer after generation);
* an **invalid** instance must be stopped by the grammar (no serialization of it is accepted)
  or by validation (the text the grammar accepted, parsed as the service parses answers, fails
  validation). One that neither stops would be a schema-invalid 200.

Serialization rule (what a model may write for one instance): any order of each object's keys
(the converter emits declared properties in the schema's order, others after them), strings
with non-ASCII characters raw or ``\\u`` escaped, integer-valued numbers as ``1`` or ``1.0``,
other numbers as Python's shortest repr; the compact grammar reads compact JSON, the bounded
grammar must read both ``json.dumps``'s spaced form and ``indent=2``. An instance passes when
one of these serializations is accepted (at most ``MAX_CANDIDATES`` are tried; key orders that
follow the schema's own property order come first).

Draft-7 cases are sent as a draft-7 client would send them, with ``"$schema":
"http://json-schema.org/draft-07/schema#"`` added to the root (the suite's draft-7 files leave it
out; without it the service reads a schema as 2020-12). Cases that need a document of the
suite's ``remotes/`` (``refRemote``, custom meta-schemas) are skipped, each with its reason.

    ./pants run bench/schema_soundness.py -- [SUITE] [--draft draft2020-12] [--show-failures]
        [--show-refusals] [--optional-format]

SUITE defaults to ``../shared/json-schema-test-suite`` relative to the repository root.
tests/python/mentator/schema/test_soundness.py runs the same pass in CI and fails on any
rejected valid instance, any invalid instance nothing stops, and any converter crash.

"Fully covered" keywords: the paper's Table 5 (Geng et al. 2025) counts test-suite categories
(files) a framework passes entirely — every schema supported, every valid instance accepted and
every invalid one rejected by the constrained decoder — Guidance 13, llama.cpp 1. Printed twice:
by the grammar alone (the paper's sense) and by grammar + validation (what a client of the
service sees: no invalid answer ever returned, every valid one possible).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator, validators

from mentator.schema.gbnf import WHITESPACE_MODES, SchemaToGrammarError, schema_to_gbnf
from mentator.schema.validation import (
    SchemaProblemError,
    check_schema,
    parse_json_answer,
    validate_response,
)
from mentator_testing.gbnf_recogniser import Grammar

DEFAULT_SUITE = Path("../shared/json-schema-test-suite")  # relative to the repository root
DRAFTS = ("draft2020-12", "draft7")
DRAFT_URIS = {"draft7": "http://json-schema.org/draft-07/schema#"}
MAX_CANDIDATES = 400  # serializations tried per instance and grammar
PAPER_FULLY_COVERED = {"Guidance": 13, "llama.cpp": 1}  # Table 5, draft 2020-12

# Cases left out, and why (printed; the CI test allows no other reason).
REMOTE_REF = "needs the suite's remotes/ documents (remote $ref)"
REMOTE_META_SCHEMA = "a custom meta-schema from the suite's remotes/"
SKIP_REASONS = (REMOTE_REF, REMOTE_META_SCHEMA)
SKIPPED_FILES = {"refRemote.json": REMOTE_REF}
REMOTE_MARK = "http://localhost:1234/"  # where the suite's remotes/ live


@dataclass
class KeywordReport:
    """One test-suite file (a keyword, a "category" in the paper's sense)."""

    draft: str
    keyword: str
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    skipped: int = 0
    crashed: int = 0
    valid: int = 0
    valid_ok: int = 0  # accepted by both grammars and by validation
    # Valid for the suite (format is an annotation there) but not for the service, which asserts
    # format (README "Differences from the original"): left out of ``valid``.
    format_asserted: int = 0
    # Valid, but with keys an object without additionalProperties does not declare: the
    # service's grammar closes such objects (gbnf.py, as llama.cpp does); the open grammar
    # (open_objects) accepts them. Counted inside ``valid``, not in ``valid_ok``.
    closed: int = 0
    closed_cases: list[str] = field(default_factory=list)
    invalid: int = 0
    by_grammar: int = 0
    by_validation: int = 0
    neither: int = 0
    failures: list[str] = field(default_factory=list)
    skip_reasons: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def fully_covered(self, *, with_validation: bool) -> bool:
        stopped = self.by_grammar + (self.by_validation if with_validation else 0)
        return (
            self.cases > 0
            and self.accepted == self.cases
            and self.valid_ok == self.valid
            and stopped == self.invalid
        )


# ---------------------------------------------------------------- serializations


def _property_ranks(schema: object) -> dict[str, int]:
    """Each property name's first position among the schema's ``properties`` / ``required``
    lists, in document order: the order the converter writes declared keys in."""
    ranks: dict[str, int] = {}
    stack: list[object] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for name in (*(node.get("properties") or {}), *(node.get("required") or [])):
                if isinstance(name, str):
                    ranks.setdefault(name, len(ranks))
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return ranks


def _key_orders(keys: list[str], ranks: dict[str, int]) -> Iterator[tuple[str, ...]]:
    """Key orders of one object, the schema's order first, then every other permutation."""
    ranked = tuple(sorted(keys, key=lambda key: (ranks.get(key, len(ranks)), keys.index(key))))
    yield ranked
    if tuple(keys) != ranked:
        yield tuple(keys)
    for order in itertools.permutations(keys):
        if order not in (ranked, tuple(keys)):
            yield order


def _number_forms(value: int | float) -> list[str]:
    if isinstance(value, float) and not value.is_integer():
        return [json.dumps(value)]
    if isinstance(value, float) and abs(value) >= 1e16:
        return [json.dumps(value)]  # 1e+20: Python's own form (no exact integer digits wanted)
    number = int(value)
    return [str(number), f"{number}.0"]


def _renderings(value: object, ranks: dict[str, int], ascii_only: bool) -> Iterator[Any]:
    """Every way of writing ``value`` as a tree of (already written) JSON pieces."""
    if isinstance(value, dict):
        keys = list(value)
        for order in _key_orders(keys, ranks):
            per_key = [list(_limited(_renderings(value[key], ranks, ascii_only))) for key in order]
            for choice in itertools.product(*per_key):
                yield ("object", tuple(zip(order, choice, strict=True)))
    elif isinstance(value, list):
        per_item = [list(_limited(_renderings(item, ranks, ascii_only))) for item in value]
        for choice in itertools.product(*per_item):
            yield ("array", choice)
    elif isinstance(value, bool) or value is None:
        yield json.dumps(value)
    elif isinstance(value, (int, float)):
        yield from _number_forms(value)
    else:
        yield json.dumps(value, ensure_ascii=ascii_only)


def _limited(items: Iterator[Any]) -> Iterator[Any]:
    return itertools.islice(items, MAX_CANDIDATES)


def _write(tree: Any, style: str, depth: int = 0) -> str:
    """A rendering tree as text: ``compact``, ``spaced`` (json.dumps) or ``pretty`` (indent 2)."""
    if isinstance(tree, str):
        return tree
    kind, parts = tree
    opening, closing = ("{", "}") if kind == "object" else ("[", "]")
    if not parts:
        return opening + closing
    if kind == "object":
        colon = ":" if style == "compact" else ": "
        items = [
            json.dumps(key, ensure_ascii=False) + colon + _write(sub, style, depth + 1)
            for key, sub in parts
        ]
    else:
        items = [_write(sub, style, depth + 1) for sub in parts]
    if style == "pretty":
        inner = "\n" + "  " * (depth + 1)
        return opening + inner + ("," + inner).join(items) + "\n" + "  " * depth + closing
    return opening + ("," if style == "compact" else ", ").join(items) + closing


def serializations(instance: object, schema: object) -> Iterator[Any]:
    """Rendering trees of ``instance`` (see the module's serialization rule), at most
    ``MAX_CANDIDATES``; ``_write`` turns one into text."""
    ranks = _property_ranks(schema)
    seen: set[str] = set()
    count = 0
    for ascii_only in (False, True):
        for tree in _renderings(instance, ranks, ascii_only):
            key = _write(tree, "compact")
            if key in seen:
                continue
            seen.add(key)
            yield tree
            count += 1
            if count >= MAX_CANDIDATES:
                return


STYLES = {"compact": ("compact",), "bounded": ("spaced", "pretty")}


def accepted_text(grammar: Grammar, mode: str, instance: object, schema: object) -> str | None:
    """A serialization of ``instance`` that ``grammar`` accepts in every style of its mode."""
    for tree in serializations(instance, schema):
        texts = [_write(tree, style) for style in STYLES[mode]]
        if all(grammar.accepts(text) for text in texts):
            return texts[0]
    return None


def any_accepted_text(grammar: Grammar, mode: str, instance: object, schema: object) -> str | None:
    """A serialization of ``instance`` that ``grammar`` accepts in any style of its mode."""
    for tree in serializations(instance, schema):
        for style in STYLES[mode]:
            text = _write(tree, style)
            if grammar.accepts(text):
                return text
    return None


# ---------------------------------------------------------------- the pass


def _skip_reason(file_name: str, schema: object) -> str | None:
    if file_name in SKIPPED_FILES:
        return SKIPPED_FILES[file_name]
    if isinstance(schema, dict) and str(schema.get("$schema", "")).startswith(REMOTE_MARK):
        return REMOTE_META_SCHEMA
    return None


def as_sent(draft: str, schema: object) -> object:
    """The schema as a client of that draft sends it (draft 7 names itself, see above)."""
    uri = DRAFT_URIS.get(draft)
    if uri and isinstance(schema, dict) and "$schema" not in schema:
        return {"$schema": uri, **schema}
    return schema


def _valid_by_validation(schema: object, text: str) -> tuple[bool, str]:
    try:
        problem = validate_response(schema, parse_json_answer(text))
    except (SchemaProblemError, ValueError) as error:
        return False, f"{type(error).__name__}: {error}"
    return problem is None, problem or ""


def _format_asserted(schema: object, instance: object) -> bool:
    """Whether only the service's format assertion makes ``instance`` invalid."""
    if validate_response(schema, instance) is None:
        return False
    typed: Any = schema
    cls = validators.validator_for(typed, default=Draft202012Validator)
    return bool(cls(typed).is_valid(cast(Any, instance)))  # no format checker: an annotation


def check_case(
    draft: str,
    file_name: str,
    case: dict[str, Any],
    report: KeywordReport,
    *,
    open_objects: bool = False,
) -> None:
    """Convert one case's schema and check its instances; counts go into ``report``.

    ``open_objects``: convert as JSON Schema says (objects without additionalProperties accept
    other keys); else as the service does, and a valid instance that only the open grammar
    accepts counts as ``closed`` (the convention's cost), not as a failure."""
    report.cases += 1
    where = f"{draft}/{file_name}: {case['description']}"
    reason = _skip_reason(file_name, case["schema"])
    if reason is not None:
        report.skipped += 1
        report.skip_reasons.append(reason)
        report.refusals.append(f"{where}: skipped ({reason})")
        return
    schema = as_sent(draft, case["schema"])
    grammars: dict[str, Grammar] = {}
    open_grammars: dict[str, Grammar] = {}
    try:
        problem = check_schema(schema)
        if problem:
            report.refused += 1
            report.refusals.append(f"{where}: invalid schema ({problem})")
            return
        for mode in WHITESPACE_MODES:
            grammars[mode] = Grammar(schema_to_gbnf(schema, mode, open_objects=open_objects))
            if not open_objects:
                open_grammars[mode] = Grammar(schema_to_gbnf(schema, mode, open_objects=True))
    except SchemaToGrammarError as error:
        report.refused += 1
        report.refusals.append(f"{where}: refused ({error})")
        return
    except Exception as error:  # a crash: a 500 for a client
        report.crashed += 1
        frames = traceback.extract_tb(error.__traceback__)[-3:]
        report.failures.append(
            f"CRASH {where}: {type(error).__name__}: {str(error)[:200]} at "
            + " <- ".join(f"{frame.name}:{frame.lineno}" for frame in reversed(frames))
        )
        return
    report.accepted += 1
    for test in case["tests"]:
        instance, label = test["data"], f"{where} / {test['description']}"
        if test["valid"] and _format_asserted(schema, instance):
            report.format_asserted += 1
        elif test["valid"]:
            report.valid += 1
            _check_valid(schema, instance, grammars, open_grammars, label, report)
        else:
            report.invalid += 1
            _check_invalid(schema, instance, grammars, label, report)


def _check_valid(
    schema: object,
    instance: object,
    grammars: dict[str, Grammar],
    open_grammars: dict[str, Grammar],
    label: str,
    report: KeywordReport,
) -> None:
    problems = []
    text = None
    for mode, grammar in grammars.items():
        found = accepted_text(grammar, mode, instance, schema)
        if found is None:
            problems.append(f"the {mode} grammar rejects it")
        elif text is None:
            text = found
    if text is not None:
        ok, message = _valid_by_validation(schema, text)
        if not ok:
            problems.append(f"validation rejects {text!r}: {message}")
    if problems and text is None and open_grammars:
        opened = [
            accepted_text(grammar, mode, instance, schema)
            for mode, grammar in open_grammars.items()
        ]
        if all(opened) and _valid_by_validation(schema, str(opened[0]))[0]:
            report.closed += 1  # only undeclared keys, which the convention forbids
            report.closed_cases.append(f"{label}: {json.dumps(instance, ensure_ascii=False)[:120]}")
            return
    if problems:
        shown = json.dumps(instance, ensure_ascii=False)[:200]
        report.failures.append(f"VALID REJECTED {label}: {shown}: {'; '.join(problems)}")
    else:
        report.valid_ok += 1


def _check_invalid(
    schema: object,
    instance: object,
    grammars: dict[str, Grammar],
    label: str,
    report: KeywordReport,
) -> None:
    texts = [
        text
        for mode, grammar in grammars.items()
        if (text := any_accepted_text(grammar, mode, instance, schema)) is not None
    ]
    if not texts:
        report.by_grammar += 1
        return
    passing = [text for text in texts if _valid_by_validation(schema, text)[0]]
    if passing:
        report.neither += 1
        report.failures.append(
            f"INVALID NOT STOPPED {label}: the grammar accepts {passing[0]!r} and validation "
            "passes it"
        )
    else:
        report.by_validation += 1


def suite_files(suite: Path, draft: str, *, optional_format: bool = False) -> list[Path]:
    """The draft's keyword files; with ``optional_format`` also ``optional/format/*.json``
    (they take ``format`` as an assertion, as the service does for the formats jsonschema
    checks; for the others a wrong string is an invalid instance neither side stops)."""
    files = sorted((suite / "tests" / draft).glob("*.json"))
    if optional_format:
        files += sorted((suite / "tests" / draft / "optional" / "format").glob("*.json"))
    return files


def soundness_pass(
    suite: Path,
    drafts: Iterable[str] = DRAFTS,
    *,
    optional_format: bool = False,
    open_objects: bool = False,
) -> list[KeywordReport]:
    reports = []
    for draft in drafts:
        for path in suite_files(suite, draft, optional_format=optional_format):
            keyword = path.stem if path.parent.name != "format" else f"format:{path.stem}"
            report = KeywordReport(draft, keyword)
            for case in json.loads(path.read_text(encoding="utf-8")):
                check_case(draft, path.name, case, report, open_objects=open_objects)
            reports.append(report)
    return reports


def failures(reports: Iterable[KeywordReport]) -> list[str]:
    return [failure for report in reports for failure in report.failures]


def table(reports: list[KeywordReport]) -> str:
    """The per-keyword table, one block per draft, and the fully-covered counts."""
    lines: list[str] = []
    for draft in dict.fromkeys(report.draft for report in reports):
        part = [report for report in reports if report.draft == draft]
        lines.append(f"{draft}:")
        lines.append(
            f"  {'keyword':<24}{'cases':>6}{'acc':>5}{'ref':>5}{'skip':>5}{'crash':>6}"
            f"{'valid':>7}{'ok':>5}{'closed':>7}{'fmt':>4}{'invalid':>8}{'gram':>6}{'valid.':>7}"
            f"{'neither':>8}"
            "  full"
        )
        for report in part:
            full = (
                "grammar"
                if report.fully_covered(with_validation=False)
                else "+valid."
                if report.fully_covered(with_validation=True)
                else ""
            )
            lines.append(
                f"  {report.keyword:<24}{report.cases:>6}{report.accepted:>5}{report.refused:>5}"
                f"{report.skipped:>5}{report.crashed:>6}{report.valid:>7}{report.valid_ok:>5}"
                f"{report.closed:>7}{report.format_asserted:>4}"
                f"{report.invalid:>8}{report.by_grammar:>6}{report.by_validation:>7}"
                f"{report.neither:>8}  {full}"
            )
        totals = [
            sum(getattr(report, name) for report in part)
            for name in (
                "cases",
                "accepted",
                "refused",
                "skipped",
                "crashed",
                "valid",
                "valid_ok",
                "closed",
                "format_asserted",
                "invalid",
                "by_grammar",
                "by_validation",
                "neither",
            )
        ]
        lines.append(
            f"  {'all':<24}{totals[0]:>6}{totals[1]:>5}{totals[2]:>5}{totals[3]:>5}"
            f"{totals[4]:>6}{totals[5]:>7}{totals[6]:>5}{totals[7]:>7}{totals[8]:>4}{totals[9]:>8}"
            f"{totals[10]:>6}{totals[11]:>7}{totals[12]:>8}"
        )
        by_grammar = sum(report.fully_covered(with_validation=False) for report in part)
        with_validation = sum(report.fully_covered(with_validation=True) for report in part)
        lines.append(
            f"  fully covered keywords: {by_grammar} of {len(part)} by the grammar alone "
            f"(the paper's Table 5: Guidance {PAPER_FULLY_COVERED['Guidance']}, llama.cpp "
            f"{PAPER_FULLY_COVERED['llama.cpp']}); {with_validation} of {len(part)} by grammar "
            "+ validation"
        )
        lines.append("")
    lines.append(
        "columns: acc/ref/skip/crash = cases accepted / refused (or invalid schema) / skipped / "
        "crashed; valid, ok = valid instances of accepted cases, accepted by both grammars and "
        "by validation; closed = valid, but with keys an object without additionalProperties "
        "does not declare (the default grammar closes such objects; --open-objects); fmt = "
        "valid for the suite (format is an annotation there), invalid for "
        "the service (it asserts format); invalid = invalid instances of accepted cases, stopped "
        "by the grammar (gram), by validation after generation (valid.), by neither (must be 0)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("suite", nargs="?", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("--draft", choices=DRAFTS, action="append", help="only this draft")
    parser.add_argument("--show-failures", action="store_true", help="list every failure")
    parser.add_argument("--show-refusals", action="store_true", help="list refused cases")
    parser.add_argument(
        "--open-objects",
        action="store_true",
        help="convert with open_objects (JSON Schema's default for additionalProperties)",
    )
    parser.add_argument(
        "--optional-format", action="store_true", help="also optional/format/ (report only)"
    )
    args = parser.parse_args(argv)
    drafts = args.draft or list(DRAFTS)
    if not any(suite_files(args.suite, draft) for draft in drafts):
        print(f"no test-suite files under {args.suite.resolve()}/tests", file=sys.stderr)
        return 2
    started = time.perf_counter()
    reports = soundness_pass(
        args.suite, drafts, optional_format=args.optional_format, open_objects=args.open_objects
    )
    print(f"JSON-Schema-Test-Suite soundness, {args.suite.resolve()}")
    print(table(reports))
    found = failures(reports)
    if found:
        print(f"FAILURES ({len(found)}):")
        for failure in found if args.show_failures else found[:20]:
            print(f"  {failure}")
    if args.show_refusals:
        print("refused / skipped:")
        for report in reports:
            for refusal in report.refusals:
                print(f"  {refusal}")
    print(f"({time.perf_counter() - started:.1f} s in all)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
