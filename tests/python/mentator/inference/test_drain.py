"""The drain (SIGTERM) as the use-cases see it (`inference.drain`, a fake engine, no HTTP): a new
request is refused with 503 and retry advice, an admitted one runs on (streams included), and
the end of the grace cuts off what still waits or runs with its own 503, recorded like any
failure, giving back the queue slot and the engine handle."""

from __future__ import annotations

import asyncio

import pytest

from mentator.inference.errors import Draining, GraceEnded
from mentator.inference.requests import ChatRequest, EmbeddingRequest
from mentator_testing.use_case_rig import MODEL, Rig, caller, prompt_request


def _assert_all_given_back(rig: Rig) -> None:
    assert rig.queue.running() == 0 and rig.queue.waiting() == 0
    assert rig.engine.released == len(rig.engine.acquired)


def _chat() -> ChatRequest:
    return ChatRequest(MODEL, [{"role": "user", "content": "hi"}], {}, body={"model": MODEL})


def test_a_new_request_while_draining_is_a_503_with_retry_advice(rig: Rig) -> None:
    rig.parts.drain.begin(25)
    with pytest.raises(Draining) as raised:
        rig.run(rig.completions.prompt(prompt_request(), caller()))
    assert raised.value.code == 503 and raised.value.retry_after_s
    assert "shutting down" in raised.value.message
    with pytest.raises(Draining):
        rig.run(rig.completions.open_stream(_chat(), caller("/v1/chat/completions")))
    with pytest.raises(Draining):
        rig.run(rig.embeddings.embed(EmbeddingRequest(MODEL, ["x"]), caller("/embedding")))
    assert rig.engine.acquired == []
    assert [row["code"] for row in rig.rows()] == [503, 503]  # completions are stored
    _assert_all_given_back(rig)


def test_requests_admitted_before_the_drain_run_to_their_end(rig: Rig) -> None:
    rig.engine.delay_s = 0.3

    async def scenario() -> tuple[object, ...]:
        running = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)
        assert (rig.queue.running(), rig.queue.waiting()) == (1, 1)
        rig.parts.drain.begin(25)
        late = rig.completions.prompt(prompt_request(), caller())
        return tuple(await asyncio.gather(running, waiting, late, return_exceptions=True))

    running, waiting, late = rig.run(scenario())
    assert isinstance(running, dict) and isinstance(waiting, dict)
    assert isinstance(late, Draining)
    _assert_all_given_back(rig)


def test_a_stream_admitted_before_the_drain_streams_to_its_end(rig: Rig) -> None:
    rig.engine.stream_delay_s = 0.05

    async def scenario() -> str:
        stream = await rig.completions.open_stream(_chat(), caller("/v1/chat/completions"))
        rig.parts.drain.begin(25)
        try:
            return "".join([delta.text async for delta in stream.deltas()])
        finally:
            await stream.close()

    assert rig.run(scenario()) == "Hello"
    assert [row["code"] for row in rig.rows()] == [200]
    _assert_all_given_back(rig)


def test_the_end_of_the_grace_cuts_off_what_runs_and_what_waits(rig: Rig) -> None:
    rig.engine.delay_s = 30

    async def scenario() -> tuple[object, ...]:
        running = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)
        rig.parts.drain.begin(0.1)
        assert rig.parts.drain.expire() == 2
        return tuple(
            await asyncio.wait_for(
                asyncio.gather(running, waiting, return_exceptions=True), timeout=5
            )
        )

    for outcome in rig.run(scenario()):
        assert isinstance(outcome, GraceEnded), outcome
        assert outcome.code == 503 and outcome.retry_after_s
        assert "drain grace of 0.1 s (drainGraceMsec) ended" in outcome.message
    assert [row["code"] for row in rig.rows()] == [503, 503]
    errors = [line for line in rig.logger.lines if line[0] == "error"]
    assert len(errors) == 2 and all(pipe == "API.POST /prompt" for _, pipe, _ in errors)
    _assert_all_given_back(rig)


def test_the_end_of_the_grace_ends_a_stream_with_an_error(rig: Rig) -> None:
    rig.engine.stream_pieces = ["a"] * 100
    rig.engine.stream_delay_s = 0.05

    async def scenario() -> str:
        stream = await rig.completions.open_stream(_chat(), caller("/v1/chat/completions"))
        rig.parts.drain.begin(0.2)
        text = ""
        with pytest.raises(GraceEnded):
            async for delta in stream.deltas():
                text += delta.text
                if len(text) == 3:
                    rig.parts.drain.expire()
        await stream.close()
        return text

    assert rig.run(scenario()) == "aaa"
    [row] = rig.rows()
    assert row["code"] == 503 and row["answerRaw"] == "aaa"
    _assert_all_given_back(rig)
