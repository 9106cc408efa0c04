"""`check_context_size`: a ``contextSize`` up to the model's trained context is accepted, one
token more is the client's mistake (a 400 that says the limit), and an unknown side checks
nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentator.inference.errors import InvalidRequest
from mentator.inference.slots import check_context_size
from mentator.models.discovery import ModelInfo

TRAINED = 8192


def _model(context_length: int | None) -> ModelInfo:
    return ModelInfo(
        name="small.gguf",
        relative_file_name="small.gguf",
        path=Path("small.gguf"),
        size_kb=1,
        layer_count=None,
        is_reasoning=None,
        size_bytes=1024,
        context_length=context_length,
    )


def test_the_trained_context_itself_is_accepted() -> None:
    check_context_size(_model(TRAINED), TRAINED)
    check_context_size(_model(TRAINED), 1)


def test_one_token_more_is_refused_with_the_limit() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_context_size(_model(TRAINED), TRAINED + 1)
    assert refused.value.code == 400
    assert refused.value.message == (
        f'contextSize {TRAINED + 1} is more than model "small.gguf" supports '
        f"(trained context {TRAINED} tokens): use at most {TRAINED}, or leave contextSize out"
    )


def test_unknown_trained_context_or_no_context_size_checks_nothing() -> None:
    check_context_size(_model(None), 10**9)
    check_context_size(_model(TRAINED), None)
    check_context_size(_model(None), None)
