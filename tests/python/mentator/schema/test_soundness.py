"""The soundness pass of bench/schema_soundness.py over the official JSON-Schema-Test-Suite.

For every case whose schema the converter accepts (drafts 2020-12 and 7), in both whitespace
modes: every valid instance is in the grammar's language (a grammar that rejects one forbids a
right answer) and passes validation — except keys an object without ``additionalProperties``
does not declare, which the default grammar forbids as llama.cpp does (each listed; with
``open_objects`` there is no exception); every invalid instance is stopped by the grammar or by
validation after generation (else the service could return a schema-invalid 200); no schema
crashes the converter. The serialization rule (key orders, number forms, escapes) is the
bench's module text. About 10 s on the 2-core development machine.

Skipped, each with its reason (``SKIP_REASONS`` there): cases that need the
suite's ``remotes/`` documents (``refRemote``, the custom meta-schemas of ``vocabulary``); and
``optional/`` (format assertion, ECMA-262 regex corners, bignums) is not read. Valid instances
that only the service's format assertion rejects (the suite treats ``format`` as an annotation;
the service checks it, README "Differences from the original") are counted apart (``fmt``).

The suite stays in ``../shared/json-schema-test-suite`` (never copied into the repository);
``./pants`` passes the shared folder as ``MENTATOR_SHARED_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from schema_soundness import (
    DRAFTS,
    SKIP_REASONS,
    KeywordReport,
    failures,
    soundness_pass,
    suite_files,
    table,
)


@pytest.fixture(scope="module")
def suite() -> Path:
    shared = os.environ.get("MENTATOR_SHARED_DIR", "")
    folder = Path(shared) / "json-schema-test-suite"
    if not shared or not all(suite_files(folder, draft) for draft in DRAFTS):
        pytest.skip(
            f"no JSON-Schema-Test-Suite in {folder} (MENTATOR_SHARED_DIR={shared!r}; ./pants "
            "sets it to ../shared next to the repository): the soundness pass needs it"
        )
    return folder


@pytest.fixture(scope="module")
def reports(suite: Path) -> list[KeywordReport]:
    return soundness_pass(suite)


def test_every_valid_instance_is_accepted_and_every_invalid_one_stopped(
    reports: list[KeywordReport],
) -> None:
    text = table(reports)
    print(text)  # the per-keyword table, in the test's output
    found = failures(reports)
    assert not found, f"{len(found)} failures:\n" + "\n".join(found) + "\n\n" + text
    # The one documented exception: keys that an object without additionalProperties does not
    # declare (closed as in llama.cpp: gbnf.py). Each is listed; the open grammar takes them.
    closed = [case for report in reports for case in report.closed_cases]
    print("closed by the convention:\n  " + "\n  ".join(closed))
    assert len(closed) <= 15, "\n".join(closed)


def test_with_open_objects_every_valid_instance_is_accepted(suite: Path) -> None:
    """As JSON Schema says (open_objects): no exception at all."""
    reports = soundness_pass(suite, open_objects=True)
    found = failures(reports)
    text = table(reports)
    assert not found, f"{len(found)} failures:\n" + "\n".join(found) + "\n\n" + text
    assert sum(report.closed for report in reports) == 0


def test_the_pass_reads_what_it_claims(reports: list[KeywordReport]) -> None:
    """A pass that silently read nothing, or skipped more than its listed reasons, would prove
    nothing: both drafts are read, most cases are converted, skips are only the listed ones."""
    for draft in DRAFTS:
        part = [report for report in reports if report.draft == draft]
        assert len(part) >= 35, f"{draft}: only {len(part)} keyword files"
        cases = sum(report.cases for report in part)
        accepted = sum(report.accepted for report in part)
        assert accepted / cases >= 0.75, f"{draft}: {accepted} of {cases} cases converted"
        assert sum(report.valid for report in part) >= 500
        assert sum(report.invalid for report in part) >= 300
    for report in reports:
        assert len(report.skip_reasons) == report.skipped
        unlisted = set(report.skip_reasons) - set(SKIP_REASONS)
        assert not unlisted, f"{report.draft}/{report.keyword}: skipped for {unlisted}"
    skipped = sum(report.skipped for report in reports)
    assert skipped <= 30, f"{skipped} cases skipped"  # refRemote (26) and vocabulary (2)
