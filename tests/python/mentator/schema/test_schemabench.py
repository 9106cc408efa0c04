"""The declared pass of bench/schemabench_declared.py over JSONSchemaBench's 3000 schemas.

Every schema is converted or refused with ``SchemaToGrammarError``, none crashes (a crash is a
500 for a client), and every grammar produced is one llama.cpp's parser accepts: all of them
through conftest's reader (which makes llama.cpp's checks, repetition budget included), a
sample through the real engine. Loading all of them into the real engine took 328 s on the
2-core development machine (``n_predict`` 1; 0 refused) — too long for CI.

The schemas stay in ``../shared/schemabench/all`` (never copied into the repository); ``./pants``
passes the shared folder as ``MENTATOR_SHARED_DIR``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from schemabench_declared import Outcome, declared_pass, report

from mentator.schema.budget import LEVELS, bounded_schema
from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf

GrammarFactory = Callable[[str], Any]  # conftest.gbnf
LlamaGrammar = Callable[..., Any]  # conftest.llama_grammar
ENGINE_SAMPLE = 40  # every 40th accepted grammar goes through the real engine


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    shared = os.environ.get("MENTATOR_SHARED_DIR", "")
    folder = Path(shared) / "schemabench" / "all"
    if not shared or not any(folder.glob("*__*.json")):
        pytest.skip(
            f"no JSONSchemaBench schemas in {folder} (MENTATOR_SHARED_DIR={shared!r}; ./pants "
            "sets it to ../shared next to the repository): the declared pass needs them"
        )
    return list(declared_pass(folder, keep_grammar=True))


def test_declared_pass_over_the_corpus_has_no_crash(outcomes: list[Outcome]) -> None:
    text, crashes = report(outcomes)
    print(text)  # the table, in the test's output
    assert crashes == 0, text
    assert len(outcomes) >= 3000
    accepted = sum(1 for outcome in outcomes if outcome.kind == "accepted")
    assert accepted / len(outcomes) >= 0.99, text  # declared coverage never falls back (0.997)


def test_every_grammar_of_the_corpus_reads_as_llama_cpp_reads_it(
    outcomes: list[Outcome], gbnf: GrammarFactory
) -> None:
    unreadable = []
    for outcome in outcomes:
        if outcome.kind == "accepted":
            try:
                gbnf(outcome.grammar)
            except ValueError as error:
                unreadable.append(f"{outcome.name}: {error}")
    assert not unreadable, "\n".join(unreadable)


def test_llama_cpp_loads_a_sample_of_the_corpus_grammars(
    outcomes: list[Outcome], llama_grammar: LlamaGrammar
) -> None:
    accepted = [outcome for outcome in outcomes if outcome.kind == "accepted"]
    refused = []
    for outcome in accepted[::ENGINE_SAMPLE]:
        generated = llama_grammar(outcome.grammar, "{", n_predict=0)
        if generated.status != 200:
            refused.append(f"{outcome.name}: {generated.status} {generated.error[:200]}")
    assert not refused, "\n".join(refused)


CLOSING_SAMPLE = 10  # every 10th accepted schema: its grammars at every closing-step level


def test_the_closing_steps_grammars_read_as_llama_cpp_reads_them(
    outcomes: list[Outcome], gbnf: GrammarFactory, llama_grammar: LlamaGrammar
) -> None:
    """The retry's grammars (`schema.budget`: bounded schema, bounded values) are grammars the
    converter emits too: at every level, each reads as llama.cpp reads it (a sample of them
    through the real engine); a level may refuse a schema (it falls back to a looser one), the
    loosest never."""
    folder = Path(os.environ["MENTATOR_SHARED_DIR"]) / "schemabench" / "all"
    accepted = [outcome for outcome in outcomes if outcome.kind == "accepted"]
    problems = []
    for index, outcome in enumerate(accepted[::CLOSING_SAMPLE]):
        schema = json.loads((folder / outcome.name).read_text(encoding="utf-8"))
        for level, caps in enumerate(LEVELS):
            try:
                grammar = schema_to_gbnf(bounded_schema(schema, caps), bounded_values=caps)
            except SchemaToGrammarError as error:
                if level == 0:
                    problems.append(f"{outcome.name} {caps}: refused: {error}")
                continue
            try:
                gbnf(grammar)
            except ValueError as error:
                problems.append(f"{outcome.name} {caps}: {error}")
                continue
            if index % 4 == 0 and level in (0, len(LEVELS) - 1):
                generated = llama_grammar(grammar, "{", n_predict=0)
                if generated.status != 200:
                    problems.append(f"{outcome.name} {caps}: {generated.error[:200]}")
    assert not problems, "\n".join(problems)
