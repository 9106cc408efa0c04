"""The server-side tool loop of ``/prompt`` (reference §5.3, design: docs/tools.md).

Each round the model answers under one grammar: *a call* of one offered tool (``{"name":
<tool name>, "arguments": <its $$spec>}``, built by `inference.toolcalls`) *or the final answer*
(the ``format.jsonSchema`` grammar when the request has one with ``useGrammar``, else free text).
A call is run (its own process, PY or Node.js: `tools.execution`), its result appended as a
user turn, and the model asked again; the first answer that is not a call is the final one. After
``MAX_ROUNDS`` calls, or a call repeated with the same arguments (its result is given again,
not recomputed), the model must answer: the call alternative is dropped. Every call is
appended to ``used`` first (``usedTools``, in call order, with repeats), as the original did.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mentator.engine.ports import CompletionRequest, CompletionResult, EngineHandlePort, Message
from mentator.inference.errors import InferenceError, InvalidRequest
from mentator.inference.toolcalls import (
    FunctionTool,
    ToolOffer,
    call_grammar,
    offer_messages,
)
from mentator.logging_protocol import LoggerProtocol
from mentator.schema.gbnf import Whitespace
from mentator.tools.execution import Limits, ToolRunError, run_tool
from mentator.tools.files import ToolFile
from mentator.tools.registry import ToolRegistry

MAX_ROUNDS = 4
RESULT_CHARS = 16000  # what of a tool's result goes back into the conversation
TOOL_PIPE = "MANAGER.TOOL"


class ToolFailed(InferenceError):  # noqa: N818 - an outcome
    """A tool call failed: the original aborted the whole prompt with a 500."""

    code: ClassVar[int] = 500
    outcome: ClassVar[str] = "tool_error"


def resolve_tools(registry: ToolRegistry | None, requested: Sequence[str]) -> list[ToolFile]:
    """The tools ``toolServer`` names (``*`` = all). Unknown names are a 400 here (the original
    dropped them silently, and a typo then looked like a model that never calls tools)."""
    available = registry.tools() if registry is not None else []
    chosen: list[ToolFile] = []
    for name in requested:
        if name == "*":
            found = available
        else:
            tool = registry.find_tool(name) if registry is not None else None
            if tool is None:
                known = ", ".join(f'"{t.name}"' for t in available) or "none (toolDir is empty"
                known += ")" if not available else ""
                raise InvalidRequest(
                    f'toolServer: unknown tool "{name}"; known tools: {known}'
                    if available
                    else f'toolServer: unknown tool "{name}": no tools are loaded '
                    "(is toolDir configured and holding *.tool.txt files?)"
                )
            found = [tool]
        chosen.extend(tool for tool in found if tool not in chosen)
    return chosen


def _secrets(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [text for item in value.values() for text in _secrets(item)]
    if isinstance(value, list):
        return [text for item in value for text in _secrets(item)]
    return []


def redacted(message: str, env: dict[str, Any]) -> str:
    """``message`` without the env values the call was given: a tool's error text reaches the
    log and the chat log, its secrets must not (short values are left: they would mask words)."""
    for secret in sorted(_secrets(env), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _prefixed(grammar: str, prefix: str) -> str:
    """GBNF with every rule name prefixed (so two grammars can live in one)."""
    out: list[str] = []
    index = 0
    while index < len(grammar):
        char = grammar[index]
        if char in '"[':
            close = '"' if char == '"' else "]"
            end = index + 1
            while end < len(grammar) and grammar[end] != close:
                end += 2 if grammar[end] == "\\" else 1
            out.append(grammar[index : end + 1])
            index = end + 1
        elif char == "{":
            end = grammar.index("}", index)
            out.append(grammar[index : end + 1])
            index = end + 1
        elif char.isalpha():
            end = index
            while end < len(grammar) and (grammar[end].isalnum() or grammar[end] == "-"):
                end += 1
            out.append(prefix + grammar[index:end])
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def round_grammar(offer: ToolOffer | None, answer_grammar: str | None, free_json: bool) -> str:
    """``root ::= tool-call | answer``; ``offer`` None: the answer alone (last round)."""
    if offer is None:
        return answer_grammar or "root ::= [^\\x00]*\n"
    if answer_grammar is None and not free_json:
        return call_grammar(offer)  # auto: a call or free text that is not JSON
    calls = call_grammar(dataclasses.replace(offer, mode="required", forced=None))
    answer = answer_grammar or "root ::= [^\\x00]*\n"
    return (
        "root ::= call-root | answer-root\n"
        + _prefixed(calls, "call-")
        + "\n"
        + _prefixed(answer, "answer-")
        + "\n"
    )


def as_call(text: str, names: set[str]) -> tuple[str, Any] | None:
    """(name, arguments) when the answer is a call of an offered tool, else None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and set(data) == {"name", "arguments"} and data["name"] in names:
        return str(data["name"]), data["arguments"]
    return None


@dataclass
class ToolLoop:
    handle: EngineHandlePort
    registry: ToolRegistry | None
    tools: list[ToolFile]
    timeout_s: float
    logger: LoggerProtocol
    used: list[str]
    whitespace: Whitespace = "compact"  # between the call's JSON tokens (`schema.gbnf`)

    async def run(
        self,
        messages: Sequence[Message],
        options: dict[str, object],
        answer_grammar: str | None,
        free_json: bool,
    ) -> CompletionResult:
        by_name = {tool.name: tool for tool in self.tools}
        functions = tuple(FunctionTool(t.name, t.description, t.spec) for t in self.tools)
        offer = ToolOffer(functions, "auto", False, whitespace=self.whitespace)
        conversation: list[Message] = offer_messages(offer, messages)
        results: dict[str, str] = {}  # call (name + arguments) → its result text
        tokens = 0
        for round_number in range(MAX_ROUNDS + 1):
            last = round_number == MAX_ROUNDS
            grammar = round_grammar(None if last else offer, answer_grammar, free_json)
            result = await self.handle.complete(CompletionRequest(conversation, options, grammar))
            tokens += result.completion_tokens
            call = None if last else as_call(result.text.strip(), set(by_name))
            if call is None:
                return CompletionResult(
                    text=result.text,
                    reasoning=result.reasoning,
                    finish_reason=result.finish_reason,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=tokens,
                    timings=result.timings,
                    raw=result.raw,
                )
            name, arguments = call
            self.used.append(name)
            key = json.dumps([name, arguments], sort_keys=True)
            if key in results:
                # A small model tends to repeat a call whose result it already has: it gets
                # the same result again and must answer now (no call alternative).
                offer_now: ToolOffer | None = None
            else:
                results[key] = await self.call(by_name[name], arguments)
                offer_now = offer
            conversation = [
                *conversation,
                {"role": "assistant", "content": result.text.strip()},
                {
                    "role": "user",
                    "content": f"Result of {name}: {results[key][:RESULT_CHARS]}\n"
                    "Use this result to answer the request.",
                },
            ]
            if offer_now is None:
                return await self._final(conversation, options, answer_grammar, tokens)
        raise AssertionError("unreachable: the last round has no call alternative")

    async def _final(
        self,
        conversation: list[Message],
        options: dict[str, object],
        answer_grammar: str | None,
        tokens: int,
    ) -> CompletionResult:
        grammar = round_grammar(None, answer_grammar, True)
        result = await self.handle.complete(CompletionRequest(conversation, options, grammar))
        return CompletionResult(
            text=result.text,
            reasoning=result.reasoning,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=tokens + result.completion_tokens,
            timings=result.timings,
            raw=result.raw,
        )

    def _env(self, tool: ToolFile) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in tool.placeholders():
            env = self.registry.find_env(name) if self.registry is not None else None
            if env is None:
                raise ToolFailed(
                    f'on get response text: Error: tool "{tool.name}": env var "{{{{{name}}}}}" '
                    "not found in toolEnvDir"
                )
            values[name] = env.value
        return values

    async def call(self, tool: ToolFile, arguments: Any) -> str:
        """The tool's result as text for the model; `ToolFailed` when it produced none."""
        env = self._env(tool)
        started = time.monotonic()
        try:
            result = await run_tool(tool, arguments, env, Limits(self.timeout_s))
        except ToolRunError as error:
            raise ToolFailed(
                f'on get response text: Error: on use tool [{tool.lang}] "{tool.name}": '
                f"{redacted(str(error), env)}"
            ) from error
        # Only the name and the duration: arguments and results may carry secrets.
        self.logger.trace(
            TOOL_PIPE,
            f'tool "{tool.name}" answered in {(time.monotonic() - started) * 1000:.0f} ms',
        )
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
