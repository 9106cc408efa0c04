"""What route handlers get injected — each route asks for the parts it uses, nothing more — and
the small request facts every log line needs.

The `ServiceContext` and the use-cases (`UseCases`, built once by `app.create_app` with
`build_use_cases`) live on ``app.state``; the dependencies below hand them out, never through a
module global. They are ``async def`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, a hop to a worker thread and back for each of them on every
request (py-spy showed the hops; with two smaller changes made with it, what the service adds
to a 2-token request went from ~4.2 to ~2.5-3.0 ms on 2 cores, by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from mentator.api.errors import ApiError
from mentator.config.settings import Settings
from mentator.context import ServiceContext
from mentator.inference.completion import Completions
from mentator.inference.embedding import Embeddings
from mentator.inference.exchange import ExchangeObserver, ExchangeRecorder, ExchangeReport
from mentator.inference.requests import Caller
from mentator.inference.residency import Residency
from mentator.inference.shadowing import SHADOW_HEADER
from mentator.inference.slots import Slots
from mentator.logging_protocol import LoggerProtocol
from mentator.models.registry import ModelRegistry
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore

NO_DATABASE = "the database is not available: {why}"


async def get_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> Settings:
    return context.settings


async def get_logger(context: ContextDep) -> LoggerProtocol:
    return context.logger


async def get_registry(context: ContextDep) -> ModelRegistry:
    return context.registry


async def get_started_ms(context: ContextDep) -> int:
    """When the service started (ms since the epoch)."""
    return context.started_ms


async def get_corelog(context: ContextDep) -> CoreLogStore:
    if context.corelog is None:
        raise ApiError(500, NO_DATABASE.format(why=context.db_error or "not opened"))
    return context.corelog


async def get_chatlog(context: ContextDep) -> ChatLogStore:
    if context.chatlog is None:
        raise ApiError(500, NO_DATABASE.format(why=context.db_error or "not opened"))
    return context.chatlog


@dataclass(frozen=True)
class UseCases:
    """The use-cases of one app, built once over the context's parts."""

    completions: Completions
    embeddings: Embeddings
    residency: Residency


class _SpeedWatch:
    """Every ended exchange goes to the speed tripwire (`inference.tripwire`), then on to
    ``observer`` (the metrics)."""

    def __init__(self, context: ServiceContext, observer: ExchangeObserver | None) -> None:
        self._context = context
        self._observer = observer

    def exchange_ended(self, report: ExchangeReport) -> None:
        context = self._context
        context.speed.observe(report, context.current_backend(), context.logger)
        if self._observer is not None:
            self._observer.exchange_ended(report)


def build_use_cases(context: ServiceContext, observer: ExchangeObserver | None) -> UseCases:
    """The use-cases over ``context``: they read the engine (None while starting), the chat log
    (None while the database is unavailable), the tools and the settings from it at each
    request, so a part that changes later (a database reopened) is seen at once."""
    slots = Slots(context, context.registry, context.queue)
    recorder = ExchangeRecorder(
        logger=context.logger,
        parts=context,
        clock_ms=context.clock_ms,
        observer=_SpeedWatch(context, observer),
    )
    completions = Completions(slots=slots, recorder=recorder, parts=context, logger=context.logger)
    return UseCases(
        completions,
        Embeddings(slots=slots, recorder=recorder),
        Residency(slots=slots, logger=context.logger),
    )


def _use_cases(request: Request) -> UseCases:
    use_cases: UseCases = request.app.state.use_cases
    return use_cases


async def get_completions(request: Request) -> Completions:
    return _use_cases(request).completions


async def get_embeddings(request: Request) -> Embeddings:
    return _use_cases(request).embeddings


async def get_residency(request: Request) -> Residency:
    return _use_cases(request).residency


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def request_url(request: Request) -> str:
    """Path plus query, like Fastify's ``request.url`` in the original's log lines."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def api_pipe(request: Request) -> str:
    """The log pipe of a route, e.g. ``API.POST /prompt`` (reference §3)."""
    return f"API.{request.method} {request.url.path}"


def api_message(request: Request) -> str:
    """The log message of a route, e.g. ``[from 127.0.0.1] /prompt`` (reference §3)."""
    return f"[from {client_ip(request)}] {request_url(request)}"


async def _wait_for_disconnect(request: Request) -> None:
    # After the body was read, the next ASGI message is `http.disconnect`, which servers send
    # when the client goes away (or after the response is complete — we never get there).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def get_caller(request: Request) -> Caller:
    """Who asks (for the use-cases' log lines) and how to notice that they left."""
    return Caller(
        pipe=api_pipe(request),
        message=api_message(request),
        left=lambda: _wait_for_disconnect(request),
        route=request.url.path,
        shadow_copy=SHADOW_HEADER.lower() in request.headers,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
LoggerDep = Annotated[LoggerProtocol, Depends(get_logger)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
StartedMsDep = Annotated[int, Depends(get_started_ms)]
CoreLogDep = Annotated[CoreLogStore, Depends(get_corelog)]
ChatLogDep = Annotated[ChatLogStore, Depends(get_chatlog)]
CompletionsDep = Annotated[Completions, Depends(get_completions)]
EmbeddingsDep = Annotated[Embeddings, Depends(get_embeddings)]
ResidencyDep = Annotated[Residency, Depends(get_residency)]
CallerDep = Annotated[Caller, Depends(get_caller)]
