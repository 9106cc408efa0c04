"""Local references (``#``, ``#/$defs/a``) inside one schema document: one walk of a JSON
Pointer, shared by the converter (``schema.gbnf``) and the budget's estimate (``schema.budget``)."""

from __future__ import annotations

import urllib.parse
from typing import Literal

PointerProblem = Literal["not a string", "remote", "anchor", "missing"]


class PointerError(ValueError):
    """A ``$ref`` this module cannot follow; ``problem`` says why (each caller words it)."""

    def __init__(self, problem: PointerProblem) -> None:
        super().__init__(problem)
        self.problem: PointerProblem = problem


def local_fragment(ref: object) -> str:
    """The decoded fragment of a local JSON Pointer reference (``""`` for ``#``)."""
    if not isinstance(ref, str):
        raise PointerError("not a string")
    if not ref.startswith("#"):
        raise PointerError("remote")
    fragment = urllib.parse.unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        raise PointerError("anchor")
    return fragment


def follow(document: object, ref: object) -> object:
    """What a local ``$ref`` points to in ``document``; raises ``PointerError``."""
    node = document
    for token in local_fragment(ref).split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise PointerError("missing")
    return node
