"""The closing step of a JSON answer cut off at its token limit (config ``cutOffRetry``): asked
once more under the bounded schema's grammar, only when the JSON was cut, never when the switch
is off, never for a caller who left; the retried answer is validated against the ORIGINAL
schema (a clear 400, never a schema-invalid 200) and the exchange counts both generations."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from mentator.engine.client import sampling_params
from mentator.engine.ports import CompletionResult, Message
from mentator.inference.errors import AnswerRejected, CallerLeft
from mentator.inference.requests import ChatRequest
from mentator_testing.use_case_rig import MODEL, Rig, caller, prompt_request

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CUT = '{"city": "Paris, the capital of France, a city of many'
CALL_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "name": {"const": "get_weather"},
                "arguments": SCHEMA,
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
    ]
}
ANY_TEXT_GRAMMAR = "root ::= [^\\x00]*\n"


def cut_result(text: str = CUT, tokens: int = 128) -> CompletionResult:
    return CompletionResult(
        text=text,
        reasoning=None,
        finish_reason="length",
        prompt_tokens=40,
        completion_tokens=tokens,
        timings={"predicted_n": float(tokens), "predicted_ms": 1000.0},
    )


def done_result(text: str, tokens: int = 6) -> CompletionResult:
    return CompletionResult(
        text=text,
        reasoning=None,
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=tokens,
        timings={"predicted_n": float(tokens), "predicted_ms": 50.0},
    )


def switched(rig: Rig, **changes: Any) -> None:
    rig.parts.settings = dataclasses.replace(rig.parts.settings, **changes)


def test_a_cut_off_answer_is_asked_once_more_under_the_bounded_grammar(rig: Rig) -> None:
    rig.engine.replies = [cut_result(), done_result('{"city": "Paris"}')]
    body = rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    assert body["result"]["data"] == {"city": "Paris"}
    first, second = rig.engine.calls
    assert first.grammar is not None and second.grammar is not None
    assert second.grammar != first.grammar  # the bounded schema's grammar
    assert second.messages == first.messages and second.options == first.options
    # One exchange: logged, stored and counted once, with the tokens of both generations.
    [row] = rig.rows()
    assert row["code"] == 200 and row["answerRaw"] == '{"city": "Paris"}'
    [report] = rig.observer.reports
    assert (report.code, report.tokens, report.prompt_tokens) == (200, 134, 80)
    assert report.per_token_s == pytest.approx(1.05 / 134)
    assert any("asking once more" in (extra or "") for extra in rig.logger.extras)


def test_an_answer_that_was_not_cut_off_is_not_asked_again(rig: Rig) -> None:
    # Stopped by the grammar; and cut by the limit right after the JSON closed (complete).
    rig.engine.replies = [done_result('{"city": "Paris"}')]
    rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    rig.engine.replies = [cut_result('{"city": "Paris"}')]
    body = rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    assert body["result"]["data"] == {"city": "Paris"}
    assert len(rig.engine.calls) == 2  # one generation per request


def test_with_the_switch_off_a_cut_off_answer_is_refused_at_once(rig: Rig) -> None:
    switched(rig, cut_off_retry=False)
    rig.engine.replies = [cut_result(), done_result('{"city": "Paris"}')]
    with pytest.raises(AnswerRejected, match="cut off at the token limit"):
        rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    assert len(rig.engine.calls) == 1
    [row] = rig.rows()
    assert row["code"] == 400


def test_a_retried_answer_the_original_schema_refuses_is_a_400_never_a_200(rig: Rig) -> None:
    rig.engine.replies = [cut_result(), done_result('{"town": "Paris"}')]
    with pytest.raises(AnswerRejected) as raised:
        rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    message = raised.value.message
    assert raised.value.code == 400
    assert "asked once more" in message and "did not validate" in message
    assert "city" in message and "maxTokens" in message
    [row] = rig.rows()
    assert row["code"] == 400 and row["answerRaw"] == '{"town": "Paris"}'
    assert [report.tokens for report in rig.observer.reports] == [134]


def test_a_retried_answer_cut_off_again_names_the_limit(rig: Rig) -> None:
    rig.engine.replies = [cut_result(), cut_result('{"city": "Paris, Par')]
    with pytest.raises(AnswerRejected, match="cut off at the token limit"):
        rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    assert len(rig.engine.calls) == 2  # once more, not twice


def chat_request(**fields: Any) -> ChatRequest:
    messages: list[Message] = [
        {"role": "user", "content": "What is the weather in Paris? Use the tool."}
    ]
    return ChatRequest(MODEL, messages, {"maxTokens": 128}, body={"model": MODEL}, **fields)


def test_a_cut_off_tool_call_is_asked_once_more_and_checked(rig: Rig) -> None:
    request = chat_request(grammar=ANY_TEXT_GRAMMAR, closing_schema=CALL_SCHEMA)
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    rig.engine.replies = [cut_result('{"name": "get_weather", "arguments": {"city": "Pa'),
                          done_result(json.dumps(call))]  # fmt: skip
    answer = rig.run(rig.completions.chat(request, caller("/v1/chat/completions")))
    assert json.loads(answer.result.text) == call
    assert answer.result.completion_tokens == 134 and answer.result.prompt_tokens == 80
    assert len(rig.engine.calls) == 2
    # The same through response_format, with a retried answer the schema refuses: a 400.
    rig.engine.replies = [cut_result(), done_result('{"town": "Paris"}')]
    with pytest.raises(AnswerRejected, match="did not validate.*max_tokens"):
        rig.run(
            rig.completions.chat(chat_request(json_schema=SCHEMA), caller("/v1/chat/completions"))
        )
    assert [row["code"] for row in rig.rows()] == [200, 400]


def test_a_cut_off_free_text_answer_of_an_auto_tool_offer_is_sent_as_it_is(rig: Rig) -> None:
    request = chat_request(grammar=ANY_TEXT_GRAMMAR, closing_schema=CALL_SCHEMA)
    rig.engine.replies = [cut_result("The weather in Paris is"), done_result("{}")]
    answer = rig.run(rig.completions.chat(request, caller("/v1/chat/completions")))
    assert answer.result.text == "The weather in Paris is"
    assert len(rig.engine.calls) == 1


def test_a_caller_who_left_during_the_first_generation_gets_no_retry(rig: Rig) -> None:
    rig.engine.replies = [cut_result(), done_result('{"city": "Paris"}')]
    rig.engine.delay_s = 0.5

    async def leaves() -> None:
        await asyncio.sleep(0.1)

    with pytest.raises(CallerLeft):
        rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller(left=leaves)))
    assert len(rig.engine.calls) == 1
    [row] = rig.rows()
    assert row["code"] == 499


def test_grammar_dry_sends_the_dry_sampler_under_a_grammar_only_when_on(rig: Rig) -> None:
    rig.engine.replies = ['{"city": "Paris"}', "free text", '{"city": "Paris"}']
    rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    rig.run(rig.completions.prompt(prompt_request(), caller()))  # no grammar: no DRY
    switched(rig, grammar_dry=False)
    rig.run(rig.completions.prompt(prompt_request(schema=SCHEMA), caller()))
    with_dry, free, without_dry = (call.options for call in rig.engine.calls)
    assert sampling_params(with_dry) | GRAMMAR_DRY_FIELDS == sampling_params(with_dry)
    assert not set(GRAMMAR_DRY_FIELDS) & set(sampling_params(free))
    assert not set(GRAMMAR_DRY_FIELDS) & set(sampling_params(without_dry))


# llama-server's fields for the DRY sampler, as `engine.client.sampling_params` sends them.
GRAMMAR_DRY_FIELDS = {
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_penalty_last_n": 1024,
}
