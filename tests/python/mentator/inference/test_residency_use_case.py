"""The use-cases with several models (issue 21), through the engine port's fake: one model's
busy slot never holds up another model's request; the load / unload operations; a model that
cannot fit is `NoRoom` (503)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mentator.engine.errors import ModelTooLargeError
from mentator.inference.errors import ModelNotFound, NoRoom
from mentator.inference.requests import EmbeddingRequest
from mentator.inference.residency import LoadOrder
from mentator_testing.use_case_rig import MODEL, OTHER_MODEL, Rig, caller, prompt_request


def test_another_models_request_does_not_wait_for_a_busy_model(rig: Rig) -> None:
    """The rig's queue has one slot: before residency, beta's request waited for alpha's."""
    rig.engine.delay_s = 1.0

    async def scenario() -> tuple[int, Any]:
        on_alpha = asyncio.create_task(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.2)
        assert rig.queue.running() == 1
        beta = await rig.embeddings.embed(
            EmbeddingRequest(OTHER_MODEL, ["x"]), caller("/embedding")
        )
        alpha = await on_alpha
        return beta.duration.queue_msec, alpha["duration"]["queueMsec"]

    beta_wait, alpha_wait = rig.run(scenario())
    assert beta_wait < 300 and alpha_wait < 300


def test_a_second_request_for_the_same_model_still_queues(rig: Rig) -> None:
    rig.engine.delay_s = 0.5

    async def scenario() -> int:
        first = asyncio.create_task(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.1)
        second = await rig.embeddings.embed(EmbeddingRequest(MODEL, ["x"]), caller("/embedding"))
        await first
        return second.duration.queue_msec

    assert rig.run(scenario()) >= 300


def test_load_and_unload_operations(rig: Rig) -> None:
    answer = rig.run(rig.residency.load(LoadOrder(OTHER_MODEL, context_size=1024, keep_alive_s=60)))
    assert answer.model == OTHER_MODEL and answer.status == "load"
    assert rig.engine.acquired[-1] == (OTHER_MODEL, None, 1024)
    assert rig.engine.keep_alives[-1] == 60
    assert rig.run(rig.residency.unload(OTHER_MODEL)).unloaded is True
    with pytest.raises(ModelNotFound):
        rig.run(rig.residency.unload("gamma"))


def test_a_model_that_cannot_fit_is_no_room(rig: Rig) -> None:
    rig.engine.load_error = ModelTooLargeError("needs 205 MB of RAM, more than memoryBudgetMb 150")
    with pytest.raises(NoRoom, match="memoryBudgetMb 150") as refused:
        rig.run(rig.residency.load(LoadOrder(MODEL)))
    assert refused.value.code == 503
    with pytest.raises(NoRoom):
        rig.run(rig.completions.prompt(prompt_request(), caller()))
