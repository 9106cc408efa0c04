"""Completions: the use-case behind ``POST /prompt``, ``/v1/chat/completions`` and
``/v1/completions`` (a `ChatRequest` with ``prompt``: the text as given, no chat template).

Shared steps (reference §2.4; the ones before the queue fail fast even when the queue is busy):
1. options: the request's keys over the config's ``defaultOptions``, then every key still missing
   from the JSON defaults (port.md fix: no silent reset to the library's core defaults);
2. grammar: a JSON Schema becomes GBNF with the converter ``/check/gbnf`` uses → 400
   ``on create llama grammar: <err>``;
3. model lookup → 400 ``Model not found: "<name>"``;
4. queue slot + engine (``durationMsec`` bounds the wait and the generation, not a model load);
5. generation → 500 ``on get response text: <err>`` when the engine fails.

`/prompt` adds (`Completions.prompt`): a schema that can never validate anything → 400
``on validate response: <err>`` before generating (the original found out afterwards, with a 500);
the answer text (reasoning excluded; leading whitespace trimmed, trailing whitespace too unless
the option ``trimWhitespace`` is false) is ``answerRaw``; without ``format`` it is the data,
with it the first fenced block (or the whole text) is parsed as JSON (400
``on convert response text to JSON: <err>``) and validated (400
``JSON Schema validation failed: <path> <message>``). Every failure is logged and stored in the
chat log; a success is stored when ``log.savePrompt`` is on. A caller that leaves cancels the
generation (stored with code 499).

``toolServer`` names server-side tools (reference §5; `inference.tools_loop`): the model may call
them before answering, ``usedTools`` lists the calls. ``tool`` (inline tools) is accepted and
ignored, as in the original.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from mentator.config.options import JSON_DEFAULTS, merge_options, parse_options
from mentator.config.settings import Settings
from mentator.engine.errors import EngineError
from mentator.engine.ports import (
    CompletionDelta,
    CompletionRequest,
    CompletionResult,
    EngineHandlePort,
    LoadStatus,
    Message,
)
from mentator.inference.errors import (
    AnswerRejected,
    CallerLeft,
    InferenceError,
    InvalidRequest,
    SchemaRefused,
    TimedOut,
)
from mentator.inference.exchange import Exchange, ExchangeRecorder
from mentator.inference.requests import Caller, ChatRequest, PromptRequest
from mentator.inference.slots import (
    Placement,
    Slots,
    engine_failed,
    remaining_s,
    with_timeout,
)
from mentator.inference.tools_loop import ToolLoop, resolve_tools
from mentator.logging_protocol import LoggerProtocol
from mentator.models.discovery import ModelInfo
from mentator.schema.budget import Caps, fitting_levels
from mentator.schema.gbnf import SchemaToGrammarError, Whitespace, schema_to_gbnf
from mentator.schema.validation import SchemaProblemError, parse_json_answer, validate_response
from mentator.tools.registry import ToolRegistry


class CompletionParts(Protocol):
    """What the completions read at each request (`context.ServiceContext`): the settings
    (``defaultOptions``, ``toolTimeoutMsec``) and the server-side tools."""

    @property
    def settings(self) -> Settings: ...

    @property
    def tools(self) -> ToolRegistry | None: ...


# node-llama-cpp's built-in default, which the original used when `message.system` is absent.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of "
    "answering something incorrectly. If you don't know the answer to a question, don't share "
    "false information."
)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: ``{}`` and ``[]`` are true; ``0``, ``""``, ``null``, ``false`` not."""
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


def generation_options(
    defaults: Mapping[str, object], given: Mapping[str, Any] | None
) -> dict[str, object]:
    """Request options over config defaults, completed from the JSON defaults (step 1)."""
    merged = merge_options(defaults, given)
    return parse_options(merged, fill=True, defaults=JSON_DEFAULTS)


# Anti-repetition under a grammar (config ``grammarRepeatPenalty``): a small model at temperature
# 0 can repeat a token or phrase inside a string until its token limit; a repeat penalty over the
# last tokens breaks the loop (measured: docs/structured-output.md). It changes answers, so it is
# a switch, and a repeat penalty the request or ``defaultOptions`` set wins. Off by default:
# llama-server feeds the prompt's tokens into the penalty's window, so it also punishes copying
# a name or number from the question.
GRAMMAR_REPEAT_PENALTY = 1.15
GRAMMAR_REPEAT_LAST_N = 64

# DRY ("don't repeat yourself") under a grammar (config ``grammarDry``, on by default): the
# penalty falls on a token that would EXTEND a sequence already seen (longer than
# ``GRAMMAR_DRY`` ``dryAllowedLength`` tokens), growing with the length of the repeat — a loop
# ("sunny, sunny, sunny, ...") is stopped, while copying a name or a number from the question
# (one or two tokens after a JSON quote or colon, which are sequence breakers) costs nothing.
# Internal option names; the engine client maps them to llama-server's ``dry_*`` fields.
GRAMMAR_DRY: Mapping[str, object] = MappingProxyType(
    {
        "dryMultiplier": 0.8,
        "dryBase": 1.75,
        "dryAllowedLength": 2,
        "dryPenaltyLastN": 1024,
    }
)


def constrained_options(
    options: dict[str, object], given: Mapping[str, Any] | None, settings: Settings
) -> dict[str, object]:
    """``options`` for a generation under a grammar: the anti-repetition measures added when
    their switches are on (``grammarDry``; ``grammarRepeatPenalty`` when nothing set a penalty:
    ``repeatPenalty`` 1 is "off")."""
    if settings.grammar_dry:
        options = {**options, **GRAMMAR_DRY}
    if not settings.grammar_repeat_penalty or "repeatPenalty" in (given or {}):
        return options
    if options.get("repeatPenalty") not in (None, 1):
        return options
    last_n = options.get("repeatPenaltyNum") or GRAMMAR_REPEAT_LAST_N
    return {**options, "repeatPenalty": GRAMMAR_REPEAT_PENALTY, "repeatPenaltyNum": last_n}


def whitespace_of(settings: Settings) -> Whitespace:
    """What a grammar allows between JSON tokens (config ``compactJson``)."""
    return "compact" if settings.compact_json else "bounded"


def cut_off(result: CompletionResult, limit_name: str, options: Mapping[str, object]) -> str | None:
    """Why a constrained answer is unusable when the token limit cut it before its JSON was
    complete (None: it was not cut, or it is complete JSON all the same)."""
    if result.finish_reason != "length":
        return None
    try:
        json.loads(result.text)
    except ValueError as error:
        return (
            f"the answer was cut off at the token limit ({limit_name} "
            f"{options.get('maxTokens')}) before its JSON was complete ({error}); raise "
            f"{limit_name} or ask for a shorter answer"
        )
    return None


@dataclass(frozen=True)
class Closing:
    """The closing step of a JSON answer cut off at its token limit (config ``cutOffRetry``):
    the schema, whose bounded grammar (``schema.budget``) is built only when an answer was cut
    off, and which the retried answer is validated against (an answer is never sent because the
    bounded grammar let it through)."""

    schema: Any
    whitespace: Whitespace
    always_json: bool  # a schema answer; else (tool calls) only an answer opening { or [

    def grammar(self, tokens: int) -> tuple[str, Caps] | None:
        """The grammar of the bounded schema for an answer of at most ``tokens`` tokens
        (``schema.budget.fitting_levels``: the loosest bounds whose longest answer fits, else
        the tightest), values of any type bounded too; None: the bounds change nothing (the
        same grammar at temperature 0 would write the same answer again), or no bounded schema
        has a grammar (the cut-off answer is then refused at once, as without the switch)."""
        try:
            unbounded = schema_to_gbnf(self.schema, self.whitespace)
        except SchemaToGrammarError:
            return None
        for bounded, caps in fitting_levels(self.schema, tokens):
            try:
                grammar = schema_to_gbnf(bounded, self.whitespace, bounded_values=caps)
            except SchemaToGrammarError:
                continue  # e.g. a bound under a schema's own floor elsewhere: a looser level
            return None if grammar == unbounded else (grammar, caps)
        return None


def closing_step(schema: Any, settings: Settings, *, always_json: bool) -> Closing | None:
    """The closing step for ``schema``; None: the switch is off."""
    if not settings.cut_off_retry:
        return None
    return Closing(schema, whitespace_of(settings), always_json)


def wants_closing(result: CompletionResult, closing: Closing | None) -> bool:
    """Whether a generation is asked once more under ``closing``: its JSON was cut short by the
    token limit (an ``auto`` tool answer in free text is a text answer, sent as it is)."""
    if closing is None or cut_off(result, "", {}) is None:
        return False
    return closing.always_json or result.text.lstrip()[:1] in ("{", "[")


def both_attempts(first: CompletionResult, second: CompletionResult) -> CompletionResult:
    """The retried answer with the usage of both generations: each read the prompt and wrote
    tokens, so the prompt and completion tokens and the engine's timings add up (the metrics'
    per-token time and the usage the caller sees count everything the answer cost)."""
    timings: dict[str, float] = {
        key: first.timings.get(key, 0.0) + second.timings.get(key, 0.0)
        for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "cache_n")
        if key in first.timings or key in second.timings
    }
    return dataclasses.replace(
        second,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
        timings=timings,
    )


async def complete_within_budget(
    handle: EngineHandlePort,
    request: CompletionRequest,
    closing: Closing | None,
    deadline: float | None,
    note: Callable[[str], None],
) -> tuple[CompletionResult, bool]:
    """One generation; when the token limit cut its JSON short and a ``closing`` step is given,
    the same request once more under its grammar (the prompt is in the engine's cache by then),
    within the same deadline. Returns the answer and whether it is the retried one, which the
    caller checks against ``closing.schema`` (`retried_problem`). A caller who leaves cancels
    this whole task (`Exchange.run`), the first generation included: no retry is started."""
    result = await with_timeout(handle.complete(request), deadline)
    if not wants_closing(result, closing):
        return result, False
    assert closing is not None  # wants_closing
    # The converter runs up to five times on a large schema: not on the event loop.
    bounded = await asyncio.to_thread(closing.grammar, result.completion_tokens)
    if bounded is None:
        return result, False
    grammar, caps = bounded
    note(
        f"the answer was cut off at the token limit after {result.completion_tokens} tokens;"
        " asking once more with bounded strings, arrays and objects (cutOffRetry: at most"
        f" {caps.string} characters, {caps.items} items, {caps.extra_keys} other keys"
        + ("" if caps.optional else ", required properties only")
        + ")"
    )
    retried = await with_timeout(
        handle.complete(dataclasses.replace(request, grammar=grammar)), deadline
    )
    return both_attempts(result, retried), True


def retried_problem(text: str, closing: Closing, limit: str) -> str | None:
    """Why a retried answer that is complete JSON cannot be sent (None: it validates against
    the original schema). An answer cut off again is named by `cut_off`, as the first one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    try:
        problem = validate_response(closing.schema, data)
    except SchemaProblemError as error:
        problem = str(error)
    if problem is None:
        return None
    return (
        f"the answer was cut off at the token limit ({limit}); asked once more with bounded"
        f" strings, arrays and objects (cutOffRetry), the answer did not validate: {problem}; raise"
        f" {limit.split()[0]} or ask for a shorter answer"
    )


def grammar_for(schema: Any, whitespace: Whitespace = "compact") -> str:
    """The decoding grammar of a JSON Schema (step 2)."""
    try:
        return schema_to_gbnf(schema, whitespace)
    except SchemaToGrammarError as error:
        raise SchemaRefused(f"on create llama grammar: {error}") from error


def wants_grammar(request: PromptRequest) -> bool:
    fmt = request.format
    return fmt is not None and fmt.use_grammar and js_truthy(fmt.json_schema)


def prompt_grammar(request: PromptRequest, whitespace: Whitespace = "compact") -> str | None:
    if request.format is None or not wants_grammar(request):
        return None
    return grammar_for(request.format.json_schema, whitespace)


def check_response_schema(request: PromptRequest) -> None:
    """Fail before generating when the schema itself can never validate an answer."""
    if request.format is None:
        return
    try:
        validate_response(request.format.json_schema, None)
    except SchemaProblemError as error:
        raise SchemaRefused(f"on validate response: {error}") from error


def answer_data(request: PromptRequest, text: str, cut: str | None = None) -> Any:
    """The answer's data; ``cut`` says why, when the token limit cut the answer short."""
    if request.format is None:
        return text
    try:
        data = parse_json_answer(text)
    except ValueError as error:
        if cut is not None:
            raise AnswerRejected(f"on convert response text to JSON: {cut}") from error
        raise AnswerRejected(f"on convert response text to JSON: {error}") from error
    try:
        problem = validate_response(request.format.json_schema, data)
    except SchemaProblemError as error:
        raise InvalidRequest(f"on validate response: {error}") from error
    if problem is not None:
        raise AnswerRejected(problem)
    return data


def prompt_messages(request: PromptRequest) -> list[Message]:
    system = request.system if request.system is not None else DEFAULT_SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": request.user}]


def answer_text(text: str, options: Mapping[str, object]) -> str:
    """The answer as stored and parsed: ``trimWhitespace: false`` keeps the trailing whitespace
    (the original's trimWhitespaceSuffix); leading whitespace is always dropped."""
    text = text.lstrip()
    return text if options.get("trimWhitespace") is False else text.rstrip()


def chat_constrained(request: ChatRequest) -> bool:
    """A grammar decodes the answer: a tool-call grammar or a ``response_format`` schema."""
    return request.grammar is not None or request.json_schema is not None


@dataclass(frozen=True)
class ChatAnswer:
    """A whole /v1 chat or text completion."""

    model_name: str
    result: CompletionResult


class ChatStream:
    """A streamed /v1 chat or text completion that holds its queue slot and engine handle until
    `close` (the end of the stream, its cancellation, or a stream that never started), which
    also records the exchange."""

    def __init__(
        self,
        model_name: str,
        request: CompletionRequest,
        handle: EngineHandlePort,
        stack: AsyncExitStack,
        exchange: Exchange,
        deadline: float | None = None,
        abortable: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.model_name = model_name
        self._request = request
        self._handle = handle
        self._stack = stack
        self._exchange = exchange
        self._deadline = deadline
        self._abortable = abortable or nullcontext
        self._closed = False
        self.text = ""  # what was streamed so far (the chat log's answer)
        self.failure: InferenceError | None = None  # how the stream ended, when it failed

    async def deltas(self) -> AsyncIterator[CompletionDelta]:
        """The engine's pieces; an engine failure in the middle is `EngineFailed`, the deadline
        passing is `TimedOut`, the end of a drain's grace `GraceEnded`."""
        try:
            async with self._abortable(), asyncio.timeout(remaining_s(self._deadline)):
                async for delta in self._handle.stream(self._request):
                    self.text += delta.text
                    if delta.text or delta.reasoning:
                        self._exchange.piece_arrived()
                    if delta.usage:
                        self._exchange.tokens = int(delta.usage.get("completion_tokens") or 0)
                        self._exchange.prompt_tokens = int(delta.usage.get("prompt_tokens") or 0)
                    yield delta
        except EngineError as error:
            self.failure = engine_failed(error)
            raise self.failure from error
        except TimeoutError as error:
            self.failure = TimedOut()
            raise self.failure from error
        except InferenceError as error:
            self.failure = error
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self.failure = CallerLeft()  # the client closed the stream
            raise

    async def close(self) -> None:
        """Release the slot and the handle, record the exchange; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._stack.aclose()
        exchange = self._exchange
        if self.failure is None:
            exchange.answer_raw = self.text
            exchange.succeeded({"data": self.text}, stream=True)
        else:
            exchange.answer_raw = self.text or None
            exchange.failed(self.failure)


class Completions:
    """The completion use-cases (built once per service)."""

    def __init__(
        self,
        *,
        slots: Slots,
        recorder: ExchangeRecorder,
        parts: CompletionParts,
        logger: LoggerProtocol,
    ) -> None:
        self._slots = slots
        self._recorder = recorder
        self._parts = parts
        self._logger = logger

    # --- /prompt ------------------------------------------------------------------------------

    async def prompt(self, request: PromptRequest, caller: Caller) -> dict[str, Any]:
        """The envelope to send (and what the chat log stored)."""
        exchange = self._begin(caller, request.body, request.model)
        # Tool rounds always decode under a grammar (a call, or the answer).
        exchange.constrained = wants_grammar(request) or bool(request.tool_server)
        used_tools: list[str] = []
        data, with_tools = await exchange.run(self._generate(request, exchange, used_tools))
        result: dict[str, Any] = {"loadModelStatus": exchange.load_status}
        if with_tools:
            result["usedTools"] = used_tools
        result["data"] = data
        return exchange.succeeded(result, loadModelStatus=exchange.load_status)

    async def _generate(
        self, request: PromptRequest, exchange: Exchange, used_tools: list[str]
    ) -> tuple[Any, bool]:
        """The answer's data, and whether tools were offered (``usedTools`` is then sent)."""
        self._slots.engine()
        settings = self._parts.settings
        options = generation_options(settings.default_options, request.options)
        grammar = prompt_grammar(request, whitespace_of(settings))
        if grammar is not None or request.tool_server:
            options = constrained_options(options, request.options, settings)
        check_response_schema(request)
        registry = self._parts.tools
        tools = resolve_tools(registry, request.tool_server or [])
        tool_timeout_s = settings.tool_timeout_msec / 1000
        model = self._slots.find_model(request.model)
        timing = exchange.timing
        deadline = timing.started + request.duration_msec / 1000
        messages = prompt_messages(request)
        closing = None
        if grammar is not None and request.format is not None:
            closing = closing_step(request.format.json_schema, settings, always_json=True)
        retried = False

        def note(text: str) -> None:
            self._logger.debug(exchange.caller.pipe, exchange.caller.message, text)

        async def work(handle: EngineHandlePort, status: LoadStatus) -> CompletionResult:
            exchange.load_status = status
            # durationMsec bounds the queue wait plus the generation; a model load does not count.
            budget_s = request.duration_msec / 1000 - timing.queue_ms / 1000
            generation_deadline = time.monotonic() + budget_s
            if tools:
                used_tools.clear()  # a retried request starts its calls again
                loop = ToolLoop(
                    handle,
                    registry,
                    tools,
                    tool_timeout_s,
                    self._logger,
                    used_tools,
                    whitespace_of(settings),
                )
                answer = loop.run(messages, options, grammar, request.format is not None)
                return await with_timeout(answer, generation_deadline)
            nonlocal retried
            engine_request = CompletionRequest(messages, options, grammar)
            result, retried = await complete_within_budget(
                handle, engine_request, closing, generation_deadline, note
            )
            return result

        placement = Placement(model, request.gpulayer, request.context_size, request.keep_alive_s)
        result = await self._slots.run(placement, deadline, timing, work)
        exchange.generated(result)
        exchange.answer_raw = answer_text(result.text, options)
        cut = cut_off(result, "maxTokens", options) if grammar is not None else None
        if retried and closing is not None:
            problem = retried_problem(
                exchange.answer_raw, closing, f"maxTokens {options.get('maxTokens')}"
            )
            if problem is not None:
                raise AnswerRejected(problem)
        return answer_data(request, exchange.answer_raw, cut), bool(tools)

    def _begin(self, caller: Caller, body: Any, model: str) -> Exchange:
        """A completion's exchange, labelled with the registry's name of its model (None when
        no model has that name, so the metrics' labels stay bounded by the model folder)."""
        return self._recorder.begin(caller, "completion", body, model=self._slots.model_name(model))

    # --- /v1/chat/completions and /v1/completions ---------------------------------------------

    def _chat_parts(
        self, request: ChatRequest
    ) -> tuple[ModelInfo, CompletionRequest, Closing | None]:
        """The model, the engine request and the closing step (None: none)."""
        self._slots.engine()
        model = self._slots.find_model(request.model)
        settings = self._parts.settings
        options = generation_options(settings.default_options, request.options)
        grammar = request.grammar
        closing = None
        if grammar is None and request.json_schema is not None:
            grammar = grammar_for(request.json_schema, whitespace_of(settings))
            closing = closing_step(request.json_schema, settings, always_json=True)
        elif grammar is not None and request.closing_schema is not None:
            closing = closing_step(request.closing_schema, settings, always_json=False)
        if grammar is not None:
            options = constrained_options(options, request.options, settings)
        engine_request = CompletionRequest(request.messages, options, grammar, request.prompt)
        return model, engine_request, closing

    async def chat(self, request: ChatRequest, caller: Caller) -> ChatAnswer:
        exchange = self._begin(caller, request.body, request.model)
        exchange.constrained = chat_constrained(request)
        deadline = exchange.timing.started + request.timeout_ms / 1000

        async def complete() -> ChatAnswer:
            model, engine_request, closing = self._chat_parts(request)
            retried = False

            def note(text: str) -> None:
                self._logger.debug(exchange.caller.pipe, exchange.caller.message, text)

            async def work(handle: EngineHandlePort, _status: LoadStatus) -> CompletionResult:
                nonlocal retried
                result, retried = await complete_within_budget(
                    handle, engine_request, closing, deadline, note
                )
                return result

            placement = Placement(model, keep_alive_s=request.keep_alive_s)
            result = await self._slots.run(placement, deadline, exchange.timing, work)
            if retried and closing is not None:
                limit = f"max_tokens {engine_request.options.get('maxTokens')}"
                problem = retried_problem(result.text, closing, limit)
                if problem is not None:
                    exchange.generated(result)
                    exchange.answer_raw = result.text
                    raise AnswerRejected(problem)
            json_answer = request.json_schema is not None or result.text.lstrip()[:1] in "{["
            if engine_request.grammar is not None and result.text.strip() and json_answer:
                # A JSON answer (schema or tool call; an ``auto`` text answer starts otherwise)
                # cut by the token limit is refused, naming it, rather than sent unparsable.
                cut = cut_off(result, "max_tokens", engine_request.options)
                if cut is not None:
                    exchange.generated(result)
                    exchange.answer_raw = result.text
                    raise AnswerRejected(cut)
            return ChatAnswer(model.name, result)

        answer = await exchange.run(complete())
        exchange.generated(answer.result)
        exchange.answer_raw = answer.result.text
        exchange.succeeded({"data": answer.result.text})
        return answer

    async def open_stream(self, request: ChatRequest, caller: Caller) -> ChatStream:
        """A stream holding its slot: the errors before the first byte (unknown model, busy
        queue, failed load) are raised here, so the answer can still carry their status."""
        exchange = self._begin(caller, request.body, request.model)
        exchange.constrained = chat_constrained(request)
        deadline = exchange.timing.started + request.timeout_ms / 1000
        stack = AsyncExitStack()
        try:
            model, engine_request, _closing = self._chat_parts(request)  # streamed: no retry
            async with self._slots.abortable():
                lease = await stack.enter_async_context(
                    self._slots.hold(
                        Placement(model, keep_alive_s=request.keep_alive_s),
                        deadline,
                        exchange.timing,
                    )
                )
                handle, _status = await lease.acquire()
        except InferenceError as failure:
            await stack.aclose()
            exchange.failed(failure)
            raise
        except BaseException:
            await stack.aclose()  # the caller left while waiting: give the queue slot back
            raise
        return ChatStream(
            model.name, engine_request, handle, stack, exchange, deadline, self._slots.abortable
        )
