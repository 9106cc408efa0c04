"""The web UI (reference §6): the pages ``/``, ``/chat``, ``/stat``, ``/log/core``, ``/log/chat``
and their assets under ``/ui/<name>``, all read from the package (``mentator/api/ui/``), so the
UI works with no network. Plain HTML/CSS/JS, no framework (docs/architecture.md says why).

Every answer carries a Content-Security-Policy that allows only this origin: no page can load
anything from another host, and no inline script runs (the pages write untrusted text — log lines,
model answers — with ``textContent`` only; the policy is the second line of defence).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from mentator.api.errors import ApiError

router = APIRouter(tags=["ui"])

PAGES: dict[str, str] = {
    "/": "index.html",
    "/chat": "chat.html",
    "/stat": "stat.html",
    "/log/core": "log-core.html",
    "/log/chat": "log-chat.html",
}
MEDIA_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Small files; a new version of the service must show its new pages at once.
    "Cache-Control": "no-cache",
}


@cache
def asset_names() -> frozenset[str]:
    """The files of the UI folder: the only names ``/ui/<name>`` serves (no path is joined)."""
    folder = files("mentator.api").joinpath("ui")
    return frozenset(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in MEDIA_TYPES)
    )


@cache
def _read(name: str) -> bytes:
    return files("mentator.api").joinpath("ui", name).read_bytes()


def _asset(name: str) -> Response:
    if name not in asset_names():
        raise ApiError(404, f"Route GET:/ui/{name} not found")
    media_type = MEDIA_TYPES[name[name.rindex(".") :]]
    return Response(_read(name), media_type=media_type, headers=HEADERS)


def _page_route(path: str, name: str) -> None:
    async def page() -> Response:
        return _asset(name)

    page.__name__ = f"page_{name.replace('-', '_').removesuffix('.html')}"
    # response_class documents the answer as text/html (the default would claim JSON).
    router.add_api_route(
        path, page, methods=["GET"], summary=f"Web UI page {path}", response_class=HTMLResponse
    )


for _path, _name in PAGES.items():
    _page_route(_path, _name)


@router.get("/ui/{name}", summary="Web UI asset (CSS, JavaScript, icon)", include_in_schema=False)
async def ui_asset(name: str) -> Response:
    return _asset(name)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return _asset("favicon.svg")
