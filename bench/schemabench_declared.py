"""Benchmark (prints; exits 1 on a crash): declared coverage of JSONSchemaBench, no model.

Each schema of ``../shared/schemabench/all/`` (read in place, never copied into the repository;
see that folder's README) goes through what ``/check/gbnf`` does: the schema is checked against
its draft's meta-schema, then converted to GBNF. Per subset it prints how many schemas there are,
how many the converter accepts (declared coverage, beside the paper's Guidance and llama.cpp
numbers), the refusals grouped by reason (the keyword ``SchemaToGrammarError`` names), the
crashes (any other exception: each is a bug, a 500 for a client) and the converter's own time per
schema (p50 / p99, meta-schema check excluded).

    ./pants run bench/schemabench_declared.py -- [FOLDER] [--subset NAME] [--show-refusals]

FOLDER defaults to ``../shared/schemabench/all`` relative to the repository root (the current
directory of ``./pants run``). tests/python/mentator/schema/test_schemabench.py runs the same pass
in CI and fails on any crash. A refusal's reason is the keyword its error names
(``unsatisfiable (...)`` when no value could be valid).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.schema.validation import check_schema

DEFAULT_FOLDER = Path("../shared/schemabench/all")  # relative to the repository root

# The paper's Table 4 (Llama-3.2-1B-Instruct): declared coverage of the two best open frameworks.
PAPER_DECLARED: dict[str, tuple[float, float]] = {
    "Glaiveai2K": (0.98, 0.98),
    "Github_easy": (0.90, 0.85),
    "Snowplow": (0.87, 0.92),
    "Github_medium": (0.79, 0.77),
    "Kubernetes": (0.98, 0.98),
    "WashingtonPost": (0.86, 0.97),
    "Github_hard": (0.60, 0.61),
    "JsonSchemaStore": (0.35, 0.54),
}
SUBSET_ORDER = (
    "Glaiveai2K",
    "Github_trivial",
    "Github_easy",
    "Snowplow",
    "Github_medium",
    "Kubernetes",
    "WashingtonPost",
    "Github_hard",
    "JsonSchemaStore",
    "Github_ultra",
)


@dataclass(frozen=True)
class Outcome:
    """One schema's fate: ``kind`` is ``accepted``, ``invalid`` (not JSON, or not a valid schema
    for its draft: ``/check/gbnf`` says so before converting), ``refused`` or ``crashed``."""

    name: str
    subset: str
    kind: str
    reason: str = ""  # refusal keyword, invalid-schema note, or the crash's exception type
    detail: str = ""  # the full message (or the crash's traceback tail)
    seconds: float = 0.0  # converter time (accepted and refused schemas)
    grammar: str = ""  # the GBNF text of an accepted schema, when asked for (keep_grammar)


@dataclass
class SubsetReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.kind == kind)

    def reasons(self) -> Counter[str]:
        return Counter(outcome.reason for outcome in self.outcomes if outcome.kind == "refused")

    def times_ms(self) -> list[float]:
        return [
            outcome.seconds * 1000
            for outcome in self.outcomes
            if outcome.kind in ("accepted", "refused")
        ]


def schema_files(folder: Path) -> list[Path]:
    """``<Subset>__<id>.json`` files, sorted by name (the corpus' own naming)."""
    return sorted(path for path in folder.glob("*__*.json") if path.is_file())


def refusal_reason(error: SchemaToGrammarError) -> str:
    """The keyword a refusal names (``unsatisfiable`` ones grouped apart)."""
    keyword = getattr(error, "keyword", "") or ""
    if getattr(error, "unsatisfiable", False):
        return f"unsatisfiable ({keyword})" if keyword else "unsatisfiable"
    return keyword or error.problem.split(":", 1)[0][:60]


def classify(path: Path, *, keep_grammar: bool = False) -> Outcome:
    """What ``/check/gbnf`` would do with the schema in ``path``."""
    subset = path.name.split("__", 1)[0]
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # not the converter's business: the file is not JSON
        return Outcome(path.name, subset, "invalid", "not JSON", str(error))
    try:
        problem = check_schema(schema)
    except Exception as error:  # a crash is what this benchmark counts
        return _crash(path.name, subset, error)
    if problem:
        return Outcome(path.name, subset, "invalid", "invalid schema", problem)
    started = time.perf_counter()
    try:
        grammar = schema_to_gbnf(schema)
    except SchemaToGrammarError as error:
        elapsed = time.perf_counter() - started
        return Outcome(path.name, subset, "refused", refusal_reason(error), str(error), elapsed)
    except Exception as error:  # any other exception is a crash
        return _crash(path.name, subset, error)
    elapsed = time.perf_counter() - started
    kept = grammar if keep_grammar else ""
    return Outcome(path.name, subset, "accepted", seconds=elapsed, grammar=kept)


def _crash(name: str, subset: str, error: BaseException) -> Outcome:
    where = traceback.extract_tb(error.__traceback__)[-3:]
    detail = f"{type(error).__name__}: {str(error)[:200]} at " + " <- ".join(
        f"{frame.name}:{frame.lineno}" for frame in reversed(where)
    )
    return Outcome(name, subset, "crashed", type(error).__name__, detail)


def declared_pass(
    folder: Path, subset: str | None = None, *, keep_grammar: bool = False
) -> Iterator[Outcome]:
    for path in schema_files(folder):
        if subset is None or path.name.startswith(subset + "__"):
            yield classify(path, keep_grammar=keep_grammar)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def report(outcomes: Iterable[Outcome], *, show_refusals: bool = False) -> tuple[str, int]:
    """The printed table and the number of crashes."""
    subsets: dict[str, SubsetReport] = {}
    for outcome in outcomes:
        subsets.setdefault(outcome.subset, SubsetReport()).outcomes.append(outcome)
    order = [name for name in SUBSET_ORDER if name in subsets]
    order += sorted(set(subsets) - set(order))
    total = SubsetReport([outcome for name in order for outcome in subsets[name].outcomes])
    lines = [
        f"{'subset':<16}{'count':>6}{'accepted':>9}{'declared':>9}{'Guidance':>9}"
        f"{'llama.cpp':>10}{'invalid':>8}{'refused':>8}{'crashed':>8}{'p50 ms':>8}{'p99 ms':>8}"
    ]
    rows = [(name, subsets[name]) for name in order] + [("all", total)]
    for name, part in rows:
        count = len(part.outcomes)
        accepted = part.count("accepted")
        paper = PAPER_DECLARED.get(name)
        guidance, llama = (f"{paper[0]:.2f}", f"{paper[1]:.2f}") if paper else ("-", "-")
        times = part.times_ms()
        lines.append(
            f"{name:<16}{count:>6}{accepted:>9}{accepted / count:>9.3f}{guidance:>9}{llama:>10}"
            f"{part.count('invalid'):>8}{part.count('refused'):>8}{part.count('crashed'):>8}"
            f"{_percentile(times, 0.50):>8.2f}{_percentile(times, 0.99):>8.2f}"
        )
    lines.append("")
    lines.append("refusals by reason (all subsets):")
    for reason, number in total.reasons().most_common():
        lines.append(f"  {number:>5}  {reason}")
    lines.append("refusals by reason, per subset:")
    for name in order:
        reasons = subsets[name].reasons()
        if reasons:
            listed = ", ".join(f"{reason} {number}" for reason, number in reasons.most_common())
            lines.append(f"  {name}: {listed}")
    crashes = [outcome for outcome in total.outcomes if outcome.kind == "crashed"]
    if crashes:
        lines.append(f"CRASHES ({len(crashes)}):")
        lines.extend(f"  {outcome.name}: {outcome.detail}" for outcome in crashes)
    if show_refusals:
        lines.append("refusals:")
        lines.extend(
            f"  {outcome.name}: {outcome.detail}"
            for outcome in total.outcomes
            if outcome.kind in ("refused", "invalid")
        )
    return "\n".join(lines), len(crashes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--subset", help="only this subset (e.g. Github_hard)")
    parser.add_argument("--show-refusals", action="store_true", help="list every refusal")
    args = parser.parse_args(argv)
    files = schema_files(args.folder)
    if not files:
        print(f"no <Subset>__<id>.json schemas in {args.folder.resolve()}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    text, crashes = report(
        declared_pass(args.folder, args.subset), show_refusals=args.show_refusals
    )
    print(f"JSONSchemaBench declared coverage, {args.folder.resolve()}")
    print(text)
    print(f"({time.perf_counter() - started:.1f} s in all)")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
