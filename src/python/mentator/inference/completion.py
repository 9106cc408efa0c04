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
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from mentator.config.options import JSON_DEFAULTS, merge_options, parse_options
from mentator.engine.client import CompletionDelta, CompletionResult, Message
from mentator.engine.errors import EngineError
from mentator.engine.ports import EngineHandlePort, EngineManagerPort, LoadStatus
from mentator.inference.envelope import error_envelope, success_envelope
from mentator.inference.errors import (
    AnswerRejected,
    CallerLeft,
    EngineFailed,
    InferenceError,
    InvalidRequest,
    TimedOut,
)
from mentator.inference.requests import Caller, ChatRequest, PromptRequest
from mentator.inference.slots import (
    ModelFinder,
    engine_slot,
    find_model,
    remaining_s,
    require_engine,
    run_on_engine,
    until_caller_leaves,
    with_timeout,
)
from mentator.inference.timing import Duration, Timing
from mentator.inference.tools_loop import ToolLoop, resolve_tools
from mentator.jsontext import json_text
from mentator.logging_protocol import LoggerProtocol
from mentator.models.discovery import ModelInfo
from mentator.scheduling import RequestQueue
from mentator.schema.gbnf import SchemaToGrammarError, schema_to_gbnf
from mentator.schema.validation import SchemaProblemError, parse_json_answer, validate_response
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.database import StorageError
from mentator.tools.registry import ToolRegistry

# node-llama-cpp's built-in default, which the original used when `message.system` is absent.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of "
    "answering something incorrectly. If you don't know the answer to a question, don't share "
    "false information."
)
DB_PIPE = "DB"


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


def grammar_for(schema: Any) -> str:
    """The decoding grammar of a JSON Schema (step 2)."""
    try:
        return schema_to_gbnf(schema)
    except SchemaToGrammarError as error:
        raise InvalidRequest(f"on create llama grammar: {error}") from error


def prompt_grammar(request: PromptRequest) -> str | None:
    fmt = request.format
    if fmt is None or not fmt.use_grammar or not js_truthy(fmt.json_schema):
        return None
    return grammar_for(fmt.json_schema)


def check_response_schema(request: PromptRequest) -> None:
    """Fail before generating when the schema itself can never validate an answer."""
    if request.format is None:
        return
    try:
        validate_response(request.format.json_schema, None)
    except SchemaProblemError as error:
        raise InvalidRequest(f"on validate response: {error}") from error


def answer_data(request: PromptRequest, text: str) -> Any:
    if request.format is None:
        return text
    try:
        data = parse_json_answer(text)
    except ValueError as error:
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


def _engine_failed(error: EngineError) -> EngineFailed:
    return EngineFailed(f"on get response text: {error.message}")


@dataclass
class _Exchange:
    """What one /prompt call produced so far (for the answer, the log and the chat log)."""

    timing: Timing
    answer_raw: str | None = None
    load_status: LoadStatus | None = None
    tokens: int | None = None
    used_tools: list[str] | None = None  # set when toolServer resolved at least one tool


@dataclass(frozen=True)
class PromptAnswer:
    """A /prompt success: ``body`` is the envelope to send (and what the chat log stored)."""

    body: dict[str, Any]
    duration: Duration
    tokens: int | None


@dataclass(frozen=True)
class ChatAnswer:
    """A whole /v1 chat completion."""

    model_name: str
    result: CompletionResult
    duration: Duration


class ChatStream:
    """A streamed /v1 chat completion that holds its queue slot and engine handle until
    `close` (the end of the stream, its cancellation, or a stream that never started)."""

    def __init__(
        self,
        model_name: str,
        request: ChatRequest,
        options: dict[str, object],
        grammar: str | None,
        handle: EngineHandlePort,
        stack: AsyncExitStack,
        on_close: Callable[[ChatStream], None],
        deadline: float | None = None,
    ) -> None:
        self.model_name = model_name
        self._request = request
        self._options = options
        self._grammar = grammar
        self._handle = handle
        self._stack = stack
        self._on_close = on_close
        self._deadline = deadline
        self._closed = False
        self.text = ""  # what was streamed so far (the chat log's answer)
        self.failure: InferenceError | None = None  # how the stream ended, when it failed

    async def deltas(self) -> AsyncIterator[CompletionDelta]:
        """The engine's pieces; an engine failure in the middle is `EngineFailed`, the deadline
        passing is `TimedOut`."""
        try:
            async with asyncio.timeout(remaining_s(self._deadline)):
                if self._request.prompt is not None:
                    pieces = self._handle.stream_text(
                        self._request.prompt, self._options, grammar=self._grammar
                    )
                else:
                    pieces = self._handle.stream(
                        self._request.messages, self._options, grammar=self._grammar
                    )
                async for delta in pieces:
                    self.text += delta.text
                    yield delta
        except EngineError as error:
            self.failure = _engine_failed(error)
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
        """Release the slot and the handle, log the request; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._stack.aclose()
        self._on_close(self)


class Completions:
    """The completion use-cases over one service's parts (`engine` None = still starting)."""

    def __init__(
        self,
        *,
        engine: EngineManagerPort | None,
        models: ModelFinder,
        queue: RequestQueue,
        default_options: Mapping[str, object],
        logger: LoggerProtocol,
        chatlog: ChatLogStore | None,
        save_prompt: bool,
        clock_ms: Callable[[], int],
        tools: ToolRegistry | None = None,
        tool_timeout_s: float = 30.0,
    ) -> None:
        self._tools = tools
        self._tool_timeout_s = tool_timeout_s
        self._engine = engine
        self._models = models
        self._queue = queue
        self._defaults = default_options
        self._logger = logger
        self._chatlog = chatlog
        self._save_prompt = save_prompt
        self._clock_ms = clock_ms

    # --- /prompt ------------------------------------------------------------------------------

    async def prompt(self, request: PromptRequest, caller: Caller) -> PromptAnswer:
        exchange = _Exchange(timing=Timing())
        work = self._generate(request, exchange)
        try:
            data = await until_caller_leaves(work, caller.left() if caller.left else None)
        except InferenceError as failure:
            failure.duration = exchange.timing.duration()
            self._logger.error(caller.pipe, caller.message, failure.message)
            body = error_envelope(failure.message, failure.duration)
            self._store(failure.code, failure.duration, request, body, exchange.answer_raw)
            raise
        duration = exchange.timing.duration()
        result: dict[str, Any] = {"loadModelStatus": exchange.load_status}
        if exchange.used_tools is not None:
            result["usedTools"] = exchange.used_tools
        result["data"] = data
        body = success_envelope(result, duration)
        self._logger.debug(
            caller.pipe,
            caller.message,
            json_text({"duration": duration.to_json(), "loadModelStatus": exchange.load_status}),
        )
        self._store(200, duration, request, body, exchange.answer_raw)
        return PromptAnswer(body, duration, exchange.tokens)

    async def _generate(self, request: PromptRequest, exchange: _Exchange) -> Any:
        engine = require_engine(self._engine)
        options = generation_options(self._defaults, request.options)
        grammar = prompt_grammar(request)
        check_response_schema(request)
        tools = resolve_tools(self._tools, request.tool_server or [])
        model = find_model(self._models, request.model)
        deadline = exchange.timing.started + request.duration_msec / 1000
        messages = prompt_messages(request)

        async def work(handle: EngineHandlePort, status: LoadStatus) -> CompletionResult:
            exchange.load_status = status
            # durationMsec bounds the queue wait plus the generation; a model load does not count.
            budget_s = request.duration_msec / 1000 - exchange.timing.queue_ms / 1000
            generation_deadline = time.monotonic() + budget_s
            if tools:
                exchange.used_tools = []
                loop = ToolLoop(
                    handle,
                    self._tools,
                    tools,
                    self._tool_timeout_s,
                    self._logger,
                    exchange.used_tools,
                )
                answer = loop.run(messages, options, grammar, request.format is not None)
            else:
                answer = handle.complete(messages, options, grammar=grammar)
            return await with_timeout(answer, generation_deadline)

        try:
            result = await run_on_engine(
                engine,
                self._queue,
                model,
                request.gpulayer,
                request.context_size,
                deadline,
                exchange.timing,
                work,
            )
        except EngineError as error:
            raise _engine_failed(error) from error
        exchange.answer_raw = answer_text(result.text, options)
        exchange.tokens = result.completion_tokens
        return answer_data(request, exchange.answer_raw)

    def _store(
        self,
        code: int,
        duration: Duration,
        request: PromptRequest | ChatRequest,
        response: dict[str, Any],
        answer_raw: str | None,
    ) -> None:
        """One chat-log row (the /state stats count them): errors always, successes when
        ``log.savePrompt`` is on — the same rule for /prompt and /v1/chat/completions."""
        if self._chatlog is None or (code == 200 and not self._save_prompt):
            return
        try:
            self._chatlog.write(
                self._clock_ms(),
                code,
                duration.prompt_msec,
                duration.queue_msec,
                json_text(request.body),
                json_text(response),
                answer_raw,
            )
        except StorageError as error:
            self._logger.error(DB_PIPE, str(error))

    # --- /v1/chat/completions -----------------------------------------------------------------

    def _chat_parts(self, request: ChatRequest) -> tuple[ModelInfo, dict[str, object], str | None]:
        require_engine(self._engine)
        model = find_model(self._models, request.model)
        options = generation_options(self._defaults, request.options)
        schema = request.json_schema
        grammar = request.grammar
        if grammar is None and schema is not None:
            grammar = grammar_for(schema)
        return model, options, grammar

    async def chat(self, request: ChatRequest, caller: Caller) -> ChatAnswer:
        timing = Timing()
        deadline = timing.started + request.timeout_ms / 1000
        try:
            model, options, grammar = self._chat_parts(request)
            result = await until_caller_leaves(
                self._complete(model, request, options, grammar, timing, deadline),
                caller.left() if caller.left else None,
            )
        except InferenceError as failure:
            failure.duration = timing.duration()
            self._logger.error(caller.pipe, caller.message, failure.message)
            body = error_envelope(failure.message, failure.duration)
            self._store(failure.code, failure.duration, request, body, None)
            raise
        duration = timing.duration()
        self._logger.debug(caller.pipe, caller.message, json_text({"duration": duration.to_json()}))
        answer = success_envelope({"data": result.text}, duration)
        self._store(200, duration, request, answer, result.text)
        return ChatAnswer(model.name, result, duration)

    async def _complete(
        self,
        model: ModelInfo,
        request: ChatRequest,
        options: dict[str, object],
        grammar: str | None,
        timing: Timing,
        deadline: float,
    ) -> CompletionResult:
        async def work(handle: EngineHandlePort, _status: LoadStatus) -> CompletionResult:
            if request.prompt is not None:
                answer = handle.complete_text(request.prompt, options, grammar=grammar)
            else:
                answer = handle.complete(request.messages, options, grammar=grammar)
            return await with_timeout(answer, deadline)

        try:
            return await run_on_engine(
                self._engine, self._queue, model, None, None, deadline, timing, work
            )
        except EngineError as error:
            raise _engine_failed(error) from error

    async def open_stream(
        self, request: ChatRequest, caller: Caller, on_done: Callable[[Duration], None]
    ) -> ChatStream:
        """A stream holding its slot: the errors before the first byte (unknown model, busy
        queue, failed load) are raised here, so the answer can still carry their status."""
        timing = Timing()
        deadline = timing.started + request.timeout_ms / 1000
        stack = AsyncExitStack()
        try:
            model, options, grammar = self._chat_parts(request)
            handle, _status = await stack.enter_async_context(
                engine_slot(self._engine, self._queue, model, None, None, deadline, timing)
            )
        except InferenceError as failure:
            await stack.aclose()
            failure.duration = timing.duration()
            self._logger.error(caller.pipe, caller.message, failure.message)
            body = error_envelope(failure.message, failure.duration)
            self._store(failure.code, failure.duration, request, body, None)
            raise

        def closed(stream: ChatStream) -> None:
            duration = timing.duration()
            self._logger.debug(
                caller.pipe,
                caller.message,
                json_text({"duration": duration.to_json(), "stream": True}),
            )
            failure = stream.failure
            if failure is None:
                answer = success_envelope({"data": stream.text}, duration)
                self._store(200, duration, request, answer, stream.text)
            else:
                self._logger.error(caller.pipe, caller.message, failure.message)
                body = error_envelope(failure.message, duration)
                self._store(failure.code, duration, request, body, stream.text or None)
            on_done(duration)

        return ChatStream(model.name, request, options, grammar, handle, stack, closed, deadline)
