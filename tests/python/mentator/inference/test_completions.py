"""The completion and embedding use-cases through the engine port (a fake engine, no HTTP): each
outcome is answered, logged, stored in the chat log and counted once, and the queue slot and the
engine handle are given back whatever happened."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mentator.engine.errors import EngineConnectionError, EngineRequestError
from mentator.inference.errors import (
    Busy,
    CallerLeft,
    EngineFailed,
    StartupFailed,
    TimedOut,
)
from mentator.inference.requests import ChatRequest, EmbeddingRequest, PromptRequest
from mentator.tools.registry import ToolRegistry
from mentator_testing.use_case_rig import MODEL, OTHER_MODEL, Rig, caller, prompt_request

T = TypeVar("T")

SCHEMA = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}


def _assert_all_given_back(rig: Rig) -> None:
    assert rig.queue.running() == 0 and rig.queue.waiting() == 0
    assert rig.engine.released == len(rig.engine.acquired)


def test_prompt_success_is_answered_logged_stored_and_counted(rig: Rig) -> None:
    rig.engine.replies = ['{"sum": 5}']
    body = rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    assert body["result"] == {"loadModelStatus": "load", "data": {"sum": 5}}
    [row] = rig.rows()
    assert row["code"] == 200 and json.loads(row["response"]) == body
    assert row["answerRaw"] == '{"sum": 5}'
    [(level, pipe, message)] = [line for line in rig.logger.lines if line[1].startswith("API")]
    assert (level, pipe) == ("debug", "API.POST /prompt")
    assert json.loads(rig.logger.extras[-1] or "")["loadModelStatus"] == "load"
    [(route, kind, code, _duration, tokens)] = rig.observer.ended
    assert (route, kind, code, tokens) == ("/prompt", "completion", 200, 3)
    _assert_all_given_back(rig)


def test_engine_error_is_a_500_logged_stored_and_counted(rig: Rig) -> None:
    rig.engine.replies = [EngineRequestError("the model broke", status=500)]
    with pytest.raises(EngineFailed, match="^on get response text: the model broke$"):
        rig.run(rig.completions.prompt(prompt_request(), caller()))
    [row] = rig.rows()
    assert row["code"] == 500
    assert json.loads(row["response"])["error"] == "on get response text: the model broke"
    assert ("error", "API.POST /prompt", "[from 127.0.0.1] /prompt") in rig.logger.lines
    assert [ended[2] for ended in rig.observer.ended] == [500]
    _assert_all_given_back(rig)


def test_a_request_the_engine_never_saw_is_retried_once(rig: Rig) -> None:
    rig.engine.replies = [EngineConnectionError("refused", unsent=True), "second try"]
    body = rig.run(rig.completions.prompt(prompt_request(), caller()))
    assert body["result"]["data"] == "second try"
    assert len(rig.engine.acquired) == 2
    _assert_all_given_back(rig)


def test_a_request_the_engine_had_started_is_not_retried(rig: Rig) -> None:
    rig.engine.replies = [EngineConnectionError("reset", unsent=False), "never"]
    with pytest.raises(EngineFailed):
        rig.run(rig.completions.prompt(prompt_request(), caller()))
    assert len(rig.engine.acquired) == 1
    _assert_all_given_back(rig)


def test_caller_leaving_cancels_the_generation_and_is_stored_as_499(rig: Rig) -> None:
    rig.engine.delay_s = 30

    async def leaves() -> None:
        await asyncio.sleep(0.2)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CallerLeft):
            await rig.completions.prompt(prompt_request(), caller(left=leaves))
        return loop.time() - started

    assert rig.run(scenario()) < 5
    [row] = rig.rows()
    assert row["code"] == 499
    _assert_all_given_back(rig)


def test_deadline_passing_during_generation_is_timed_out(rig: Rig) -> None:
    rig.engine.delay_s = 30
    with pytest.raises(TimedOut, match="cancelled by timeout"):
        rig.run(rig.completions.prompt(prompt_request(duration_msec=300), caller()))
    [row] = rig.rows()
    assert row["code"] == 400
    _assert_all_given_back(rig)


def test_full_queue_is_busy_and_the_running_request_still_answers(rig: Rig) -> None:
    rig.engine.delay_s = 0.5

    async def scenario() -> tuple[object, ...]:
        first = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)  # running (1 slot)
        second = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)  # waiting (queue limit 1)
        third = rig.completions.prompt(prompt_request(), caller())
        return tuple(await asyncio.gather(first, second, third, return_exceptions=True))

    first, second, third = rig.run(scenario())
    assert isinstance(first, dict) and isinstance(second, dict)
    assert isinstance(third, Busy) and third.code == 503
    assert sorted(row["code"] for row in rig.rows()) == [200, 200, 503]
    _assert_all_given_back(rig)


def test_startup_failure_is_a_503_with_its_reason_and_no_retry_advice(rig: Rig) -> None:
    rig.parts.engine = None
    rig.parts.startup_error = "startup failed: OSError: model folder unreadable"
    with pytest.raises(StartupFailed) as raised:
        rig.run(rig.completions.prompt(prompt_request(), caller()))
    assert raised.value.code == 503
    assert "model folder unreadable" in raised.value.message
    assert "retry" not in raised.value.message
    assert rig.engine.acquired == []


def test_tool_loop_calls_the_tool_and_reports_it(rig: Rig, tmp_path: Path) -> None:
    tool_dir, env_dir = tmp_path / "tools", tmp_path / "envs"
    tool_dir.mkdir()
    env_dir.mkdir()
    spec = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}
    (tool_dir / "add.tool.txt").write_text(
        f'$$spec\n{json.dumps(spec)}\n$$code=PY\nreturn args["a"] + args["b"]\n'
    )
    rig.parts.tools = ToolRegistry(tool_dir, env_dir, rig.logger)
    rig.parts.tools.rescan()
    call = json.dumps({"name": "add.tool.txt", "arguments": {"a": 2, "b": 3}})
    rig.engine.replies = [call, "The sum is 5."]
    body = rig.run(rig.completions.prompt(prompt_request(tools=["*"]), caller()))
    assert body["result"]["usedTools"] == ["add.tool.txt"]
    assert body["result"]["data"] == "The sum is 5."
    assert "Result of add.tool.txt: 5" in rig.engine.calls[-1].messages[-1]["content"]
    assert rig.observer.ended[-1][4] == 6  # the tokens of both rounds
    _assert_all_given_back(rig)


def test_chat_stream_records_its_text_once_closed(rig: Rig) -> None:
    request = ChatRequest(MODEL, [{"role": "user", "content": "hi"}], {}, body={"model": MODEL})

    async def scenario() -> str:
        stream = await rig.completions.open_stream(request, caller("/v1/chat/completions"))
        text = "".join([delta.text async for delta in stream.deltas()])
        assert rig.queue.running() == 1  # held until closed
        await stream.close()
        await stream.close()  # a second close records nothing more
        return text

    assert rig.run(scenario()) == "Hello"
    [row] = rig.rows()
    assert row["code"] == 200 and row["answerRaw"] == "Hello"
    assert rig.observer.ended == [
        ("/v1/chat/completions", "completion", 200, rig.observer.ended[0][3], 2)
    ]
    _assert_all_given_back(rig)


def test_embeddings_are_logged_and_counted_but_never_stored(rig: Rig) -> None:
    request = EmbeddingRequest(MODEL, ["one", "three"])
    answer = rig.run(rig.embeddings.embed(request, caller("/v1/embeddings")))
    assert answer.vectors == [[0.5, -0.25, 3.0], [0.5, -0.25, 5.0]]
    assert answer.load_status == "load"
    rig.engine.embed_error = EngineRequestError("no pooling", status=500)
    with pytest.raises(EngineFailed, match="^no pooling$"):
        rig.run(rig.embeddings.embed(request, caller("/v1/embeddings")))
    assert rig.rows() == []
    assert [(ended[1], ended[2]) for ended in rig.observer.ended] == [
        ("embedding", 200),
        ("embedding", 500),
    ]
    assert json.loads(rig.logger.extras[0] or "")["inputs"] == 2
    _assert_all_given_back(rig)


def _beta_prompt(duration_msec: float = 20000) -> PromptRequest:
    request = prompt_request(duration_msec=duration_msec)
    return dataclasses.replace(
        request, model=OTHER_MODEL, body={**request.body, "model": OTHER_MODEL}
    )


def _behind_alpha(rig: Rig, delay_s: float, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` (for beta) while a /prompt computes on alpha, on a CPU engine: one model
    computes at a time, each answer takes ``delay_s``. Alpha's answer is awaited too."""
    rig.engine.computing_at_once = 1
    rig.engine.delay_s = delay_s

    async def scenario() -> T:
        first = asyncio.ensure_future(rig.completions.prompt(prompt_request(), caller()))
        await asyncio.sleep(0.05)  # computing on alpha
        result = await work()
        await first
        return result

    return rig.run(scenario())


def test_on_the_cpu_another_model_waits_for_its_turn_and_counts_it_as_queue_time(rig: Rig) -> None:
    second = _behind_alpha(rig, 0.4, lambda: rig.completions.prompt(_beta_prompt(), caller()))
    assert second["duration"]["queueMsec"] >= 250
    _assert_all_given_back(rig)


def test_a_stream_whose_deadline_passes_while_waiting_for_its_turn_is_timed_out(rig: Rig) -> None:
    body = {"model": OTHER_MODEL}
    request = ChatRequest(OTHER_MODEL, [{"role": "user", "content": "hi"}], {}, body=body)
    request = dataclasses.replace(request, timeout_ms=200)

    async def timed_out() -> None:
        with pytest.raises(TimedOut, match="cancelled by timeout"):
            await rig.completions.open_stream(request, caller("/v1/chat/completions"))

    _behind_alpha(rig, 1.0, timed_out)
    assert sorted(row["code"] for row in rig.rows()) == [200, 400]
    _assert_all_given_back(rig)


def test_a_stream_whose_caller_leaves_while_waiting_for_its_turn_gives_everything_back(
    rig: Rig,
) -> None:
    request = ChatRequest(OTHER_MODEL, [{"role": "user", "content": "hi"}], {}, body={})

    async def left() -> None:
        opening = asyncio.ensure_future(
            rig.completions.open_stream(request, caller("/v1/chat/completions"))
        )
        await asyncio.sleep(0.1)  # waiting for its turn
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening

    _behind_alpha(rig, 0.5, left)
    _assert_all_given_back(rig)


def test_a_prompt_whose_deadline_passes_while_waiting_for_its_turn_reports_it_as_queue_time(
    rig: Rig,
) -> None:
    async def timed_out() -> None:
        with pytest.raises(TimedOut, match="cancelled by timeout"):
            await rig.completions.prompt(_beta_prompt(duration_msec=300), caller())

    _behind_alpha(rig, 1.0, timed_out)
    timed_out_row = next(row for row in rig.rows() if row["code"] == 400)
    assert int(timed_out_row["durationQueueMsec"]) >= 150
    _assert_all_given_back(rig)
