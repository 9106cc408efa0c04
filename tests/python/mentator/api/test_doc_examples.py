"""The request examples of the README and docs/*.md are valid requests: each `curl … -d '<body>'`
is checked against the schema of the route it posts to (api/requests.py), so an example that
would answer 400 as written (docs/tools.md once lacked the required ``durationMsec``) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mentator.api.coerce import JsonSchema
from mentator.api.errors import ApiError
from mentator.api.requests import (
    EMBEDDING_SCHEMA,
    OPTIONS_CHECK_SCHEMA,
    PROMPT_FROM_STRING_SCHEMA,
    PROMPT_SCHEMA,
    PROMPT_TO_STRING_SCHEMA,
    SCHEMA_CHECK_SCHEMA,
    check,
)

ROUTE_SCHEMAS: dict[str, JsonSchema] = {
    "/prompt": PROMPT_SCHEMA,
    "/embedding": EMBEDDING_SCHEMA,
    "/check/options": OPTIONS_CHECK_SCHEMA,
    "/check/gbnf": SCHEMA_CHECK_SCHEMA,
    "/check/jsonresponse": SCHEMA_CHECK_SCHEMA,
    "/helper/prompt/fromstring": PROMPT_FROM_STRING_SCHEMA,
    "/helper/prompt/tostring": PROMPT_TO_STRING_SCHEMA,
}

# `curl … localhost:<port>/<route> … -d '<body>'`, the body possibly over several lines.
_CURL_WITH_BODY = re.compile(
    r"curl\b[^\n]*?localhost:\d+(?P<route>/[\w/]+)[^\n]*?-d '(?P<body>[^']*)'"
)


def _examples() -> list[tuple[str, str, str]]:
    pages = [Path("README.md"), *sorted(Path("docs").glob("*.md"))]
    assert len(pages) > 3, "the docs pages are not in the sandbox (tests/python/mentator/BUILD)"
    return [
        (f"{page}:{text.count(chr(10), 0, found.start()) + 1}", found["route"], found["body"])
        for page in pages
        for text in [page.read_text(encoding="utf-8")]
        for found in _CURL_WITH_BODY.finditer(text)
    ]


EXAMPLES = _examples()


def test_the_docs_have_request_examples() -> None:
    # README's quick start and docs/tools.md's tool call, at least: the pattern still finds them.
    assert {where.split(":")[0] for where, _, _ in EXAMPLES} >= {"README.md", "docs/tools.md"}


@pytest.mark.parametrize(("where", "route", "body"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_each_example_is_a_valid_request(where: str, route: str, body: str) -> None:
    assert route in ROUTE_SCHEMAS, f"{where}: no request schema known for {route}; add it above"
    try:
        parsed: Any = json.loads(body)
    except json.JSONDecodeError as err:
        pytest.fail(f"{where}: the body is not JSON: {err}")
    try:
        check(ROUTE_SCHEMAS[route], parsed)
    except ApiError as err:
        pytest.fail(f"{where}: {route} would answer 400: {err}")
