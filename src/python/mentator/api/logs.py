"""``/log/*`` — the core log and the chat log (reference §2.9).

Fixes of the original: ``afterId``/``limit`` must be integers (``limit=abc`` is a 400 instead of
breaking the database for the process lifetime), a page is the oldest ``limit`` rows after
``afterId`` so paging never skips rows, and a malformed ``date``/``hour`` is a 400 naming the
expected form (the original answered ``[]``). A database failure answers 500 and the next call
tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mentator.api.deps import ServicesDep, api_pipe
from mentator.api.errors import ApiError
from mentator.api.requests import (
    LOG_DATE_QUERY_SCHEMA,
    LOG_PAGE_QUERY_SCHEMA,
    parse_log_date,
    parse_log_page,
)
from mentator.api.schemas import query_doc
from mentator.service import Services
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import StorageError
from mentator.storage.logfiles import build_log_files, parse_date_hour

router = APIRouter(prefix="/log", tags=["log"])

NO_DATABASE = "the database is not available: {why}"


def _core(services: Services) -> CoreLogStore:
    if services.corelog is None:
        raise ApiError(500, NO_DATABASE.format(why=services.db_error or "not opened"))
    return services.corelog


def _chat(services: Services) -> ChatLogStore:
    if services.chatlog is None:
        raise ApiError(500, NO_DATABASE.format(why=services.db_error or "not opened"))
    return services.chatlog


async def _read(services: Services, action: Callable[[], Any]) -> Any:
    """Run a blocking store call in a worker thread; a storage failure is a 500."""
    try:
        result = await run_in_threadpool(action)
    except StorageError as error:
        services.health.db_failed(str(error), services.clock_ms())
        raise ApiError(500, str(error)) from error
    services.health.db_succeeded()
    return result


async def _by_date(
    request: Request, services: ServicesDep, kind: Literal["core", "chat"]
) -> JSONResponse:
    query = parse_log_date(request.query_params)
    try:
        start_ms, end_ms = parse_date_hour(query.date, query.hour)
    except ValueError as error:
        raise ApiError(400, f"querystring/{error}") from error
    store = _core(services) if kind == "core" else _chat(services)
    rows = await _read(services, lambda: store.by_range(start_ms, end_ms))
    return JSONResponse(build_log_files(kind, query.date, query.hour, rows))


@router.get(
    "/core/byid",
    summary="Core log rows after an id, newest first",
    openapi_extra=query_doc(LOG_PAGE_QUERY_SCHEMA),
)
async def core_by_id(request: Request, services: ServicesDep) -> JSONResponse:
    page = parse_log_page(request.query_params)
    store = _core(services)
    return JSONResponse(
        {"logs": await _read(services, lambda: store.after_id(page.after_id, page.limit))}
    )


@router.get(
    "/chat/byid",
    summary="Chat log rows after an id, newest first",
    openapi_extra=query_doc(LOG_PAGE_QUERY_SCHEMA),
)
async def chat_by_id(request: Request, services: ServicesDep) -> JSONResponse:
    page = parse_log_page(request.query_params)
    store = _chat(services)
    return JSONResponse(
        {"logs": await _read(services, lambda: store.after_id(page.after_id, page.limit))}
    )


@router.get(
    "/core/bydate",
    summary="Core log of a day or hour, as files",
    openapi_extra=query_doc(LOG_DATE_QUERY_SCHEMA),
)
async def core_by_date(request: Request, services: ServicesDep) -> JSONResponse:
    return await _by_date(request, services, "core")


@router.get(
    "/chat/bydate",
    summary="Chat log of a day or hour, as files",
    openapi_extra=query_doc(LOG_DATE_QUERY_SCHEMA),
)
async def chat_by_date(request: Request, services: ServicesDep) -> JSONResponse:
    return await _by_date(request, services, "chat")


@router.delete("/chat", summary="Delete the whole chat log")
async def delete_chat(request: Request, services: ServicesDep) -> JSONResponse:
    store = _chat(services)
    deleted: int = await _read(services, store.delete_all)
    services.logger.debug(api_pipe(request), f"deleted {deleted} chat log records")
    return JSONResponse({"deleted": deleted})
