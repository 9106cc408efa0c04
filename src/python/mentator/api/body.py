"""Reading a request body the way the original's Fastify did (reference §2.1).

* ``application/json`` (any parameters, any case) is parsed as JSON: an empty body is a 400
  ``Body cannot be empty when content-type is set to 'application/json'``, a bad one a 400
  ``Body is not valid JSON but content-type is set to 'application/json'``, and a
  ``__proto__``/``constructor.prototype`` key a 400 (secure-json-parse's prototype-poisoning
  guard, which Fastify enables by default);
* ``text/plain`` yields the text itself (schema validation then says ``body must be object``);
* no content type and no body yields None (validation says ``body must be object``);
* anything else — another content type, or a body without a content type — is a 415
  ``Unsupported Media Type``;
* JSON nested deeper than `MAX_JSON_DEPTH` arrays/objects is a 400 saying so (Python's parser and
  the validation after it recurse; without the bound a ``[[[[…]]]]`` body was a 500
  ``RecursionError``; no request of this API needs more than a few dozen levels);
* more than 1 MiB is a 413 ``Request body is too large`` (checked on Content-Length first, then
  while reading, so a huge upload is never buffered).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from mentator.api.errors import ApiError

BODY_LIMIT_BYTES = 1024 * 1024

EMPTY_JSON = "Body cannot be empty when content-type is set to 'application/json'"
INVALID_JSON = "Body is not valid JSON but content-type is set to 'application/json'"
PROTO_POISONING = "Object contains forbidden prototype property"
UNSUPPORTED_MEDIA = "Unsupported Media Type"
TOO_LARGE = "Request body is too large"
MAX_JSON_DEPTH = 256
TOO_DEEP = (
    f"Body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays/objects are accepted"
)


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    # JSON.parse knows no NaN/Infinity; Python's json would accept them.
    raise ValueError(f"{name} is not valid JSON")


def _has_proto_key(value: Any) -> bool:
    if isinstance(value, dict):
        if "__proto__" in value:
            return True
        constructor = value.get("constructor")
        if isinstance(constructor, dict) and "prototype" in constructor:
            return True
        return any(_has_proto_key(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_proto_key(item) for item in value)
    return False


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: it must not recurse itself)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json_text(text: bytes) -> Any:
    """JSON.parse semantics: strict JSON, UTF-8 (a BOM is tolerated), no NaN/Infinity."""
    decoded = text.decode("utf-8-sig")
    return json.loads(decoded, parse_constant=_reject_constant)


async def read_body(request: Request, limit: int = BODY_LIMIT_BYTES) -> Any:
    """The request body as the route's validation should see it (see module doc)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        has_body = request.headers.get("transfer-encoding") is not None or request.headers.get(
            "content-length", "0"
        ) not in ("", "0")
        if has_body:
            raise ApiError(415, UNSUPPORTED_MEDIA)
        return None
    media_type = _media_type(content_type)
    if media_type not in ("application/json", "text/plain"):
        raise ApiError(415, UNSUPPORTED_MEDIA)
    raw = await _read_limited(request, limit)
    if media_type == "text/plain":
        return raw.decode("utf-8", errors="replace")
    if raw == b"":
        raise ApiError(400, EMPTY_JSON)
    try:
        value = parse_json_text(raw)
    except RecursionError as error:
        raise ApiError(400, TOO_DEEP) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, INVALID_JSON) from error
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise ApiError(400, TOO_DEEP)
    if _has_proto_key(value):
        raise ApiError(400, PROTO_POISONING)
    return value
