"""``/log/*`` — the core log and the chat log (reference §2.9).

The byid rule (docs/ui.md): without ``afterId`` (or with 0, "no row seen yet") the answer is the
newest ``limit`` rows — a log page opened on a big database shows the tail, as the original did;
with ``afterId`` it is the OLDEST ``limit`` rows after it, so a client that follows with the
largest id it has seen never skips a row (the original returned the newest ones and lost the
rest when more than ``limit`` were new). Pages are always ordered newest first.

Other fixes of the original: ``afterId``/``limit`` must be integers (``limit=abc`` is a 400
instead of breaking the database for the process lifetime), and a malformed ``date``/``hour`` is
a 400 naming the expected form (the original answered ``[]``). A database failure answers 500
and the next call tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mentator.api.deps import ChatLogDep, CoreLogDep, LoggerDep, api_pipe
from mentator.api.errors import ApiError
from mentator.api.requests import (
    LOG_DATE_QUERY_SCHEMA,
    LOG_PAGE_QUERY_SCHEMA,
    LogDate,
    LogPage,
    log_date_query,
    log_page_query,
)
from mentator.api.schemas import query_doc
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import StorageError
from mentator.storage.logfiles import build_log_files, parse_date_hour

router = APIRouter(prefix="/log", tags=["log"])


@dataclass(frozen=True)
class _Window:
    query: LogDate
    start_ms: int
    end_ms: int


def _window(query: Annotated[LogDate, Depends(log_date_query)]) -> _Window:
    try:
        start_ms, end_ms = parse_date_hour(query.date, query.hour)
    except ValueError as error:
        raise ApiError(400, f"querystring/{error}") from error
    return _Window(query, start_ms, end_ms)


# The query is read first: a bad query is a 400 even when the database is unavailable (a 500).
LogPageDep = Annotated[LogPage, Depends(log_page_query)]
WindowDep = Annotated[_Window, Depends(_window)]


async def _read(action: Callable[[], Any]) -> Any:
    """Run a blocking store call in a worker thread; a storage failure is a 500."""
    try:
        return await run_in_threadpool(action)
    except StorageError as error:
        raise ApiError(500, str(error)) from error


async def _page(store: CoreLogStore | ChatLogStore, page: LogPage) -> list[dict[str, object]]:
    """The byid rule: the tail without ``afterId``, else the oldest rows after it."""
    after_id = page.after_id
    if after_id is None:
        return list(await _read(lambda: store.newest(page.limit)))
    return list(await _read(lambda: store.after_id(after_id, page.limit)))


async def _by_date(
    window: _Window, store: CoreLogStore | ChatLogStore, kind: Literal["core", "chat"]
) -> JSONResponse:
    rows = await _read(lambda: store.by_range(window.start_ms, window.end_ms))
    return JSONResponse(build_log_files(kind, window.query.date, window.query.hour, rows))


@router.get(
    "/core/byid",
    summary="Core log rows after an id, newest first",
    openapi_extra=query_doc(LOG_PAGE_QUERY_SCHEMA),
)
async def core_by_id(page: LogPageDep, store: CoreLogDep) -> JSONResponse:
    return JSONResponse({"logs": await _page(store, page)})


@router.get(
    "/chat/byid",
    summary="Chat log rows after an id, newest first",
    openapi_extra=query_doc(LOG_PAGE_QUERY_SCHEMA),
)
async def chat_by_id(page: LogPageDep, store: ChatLogDep) -> JSONResponse:
    return JSONResponse({"logs": await _page(store, page)})


@router.get(
    "/core/bydate",
    summary="Core log of a day or hour, as files",
    openapi_extra=query_doc(LOG_DATE_QUERY_SCHEMA),
)
async def core_by_date(window: WindowDep, store: CoreLogDep) -> JSONResponse:
    return await _by_date(window, store, "core")


@router.get(
    "/chat/bydate",
    summary="Chat log of a day or hour, as files",
    openapi_extra=query_doc(LOG_DATE_QUERY_SCHEMA),
)
async def chat_by_date(window: WindowDep, store: ChatLogDep) -> JSONResponse:
    return await _by_date(window, store, "chat")


@router.delete("/chat", summary="Delete the whole chat log")
async def delete_chat(request: Request, store: ChatLogDep, logger: LoggerDep) -> JSONResponse:
    deleted: int = await _read(store.delete_all)
    logger.debug(api_pipe(request), f"deleted {deleted} chat log records")
    return JSONResponse({"deleted": deleted})
