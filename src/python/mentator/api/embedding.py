"""``POST /embedding`` — the embedding vector of one text (reference §2.5).

The engine child always serves embeddings next to completions, so when the asked model is the one
loaded, its running settings are reused instead of reloading (the original reloaded whenever the
loaded model had a ``contextSize``). Not stored in the chat log, not counted in /state stats.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.deps import ServicesDep, api_message, api_pipe, json_text
from mentator.api.errors import ApiError, error_body
from mentator.api.pipeline import (
    ClientDisconnected,
    Timing,
    engine_slot,
    find_model,
    require_engine,
    unless_disconnected,
)
from mentator.api.requests import EMBEDDING_SCHEMA, EmbeddingRequest, parse_embedding
from mentator.api.schemas import DURATION_SCHEMA, json_body_doc, json_response_doc
from mentator.engine.errors import EngineError
from mentator.service import Services

router = APIRouter(tags=["main"])

_SUCCESS_SCHEMA = {
    "type": "object",
    "properties": {
        "duration": DURATION_SCHEMA,
        "result": {
            "type": "object",
            "properties": {
                "loadModelStatus": {"type": "string", "enum": ["load", "exists"]},
                "data": {"type": "array", "items": {"type": "number"}},
            },
        },
    },
}


def engine_settings_for(
    services: Services, model_name: str, gpulayer: float | None
) -> tuple[float | None, int | None]:
    """(gpulayer, contextSize) to ask for: the loaded ones when they serve this model already."""
    engine = require_engine(services)
    loaded = engine.current()
    if (
        loaded is not None
        and loaded.name == model_name
        and (gpulayer is None or gpulayer == loaded.gpulayer)
    ):
        return loaded.gpulayer, loaded.context_size
    return gpulayer, None


async def embed(
    services: Services, request: EmbeddingRequest, timing: Timing
) -> tuple[list[float], str]:
    """The vector and the load status; errors are `ApiError`s with the original's texts."""
    require_engine(services)
    model = find_model(services, request.model)
    gpulayer, context_size = engine_settings_for(services, model.name, request.gpulayer)
    async with engine_slot(services, model, gpulayer, context_size, None, timing) as (
        handle,
        status,
    ):
        try:
            vector = await handle.embed(request.message)
        except EngineError as error:
            raise ApiError(500, error.message) from error
    return vector, status


@router.post(
    "/embedding",
    summary="Embedding vector of a text",
    openapi_extra={**json_body_doc(EMBEDDING_SCHEMA), **json_response_doc(_SUCCESS_SCHEMA)},
)
async def embedding_route(request: Request, services: ServicesDep) -> JSONResponse:
    timing = Timing()
    parsed = parse_embedding(await read_body(request))
    pipe, message = api_pipe(request), api_message(request)
    try:
        vector, status = await unless_disconnected(request, embed(services, parsed, timing))
    except ApiError as failure:
        services.logger.error(pipe, message, failure.message)
        return JSONResponse(
            error_body(failure.message, timing.duration()),
            status_code=failure.status,
            headers=failure.headers or None,
        )
    except ClientDisconnected as gone:
        services.logger.error(pipe, message, str(gone))
        return JSONResponse(error_body(str(gone), timing.duration()), status_code=499)
    duration = timing.duration()
    extra: dict[str, Any] = {
        "duration": duration.to_json(),
        "loadModelStatus": status,
        "vectorLen": len(vector),
    }
    services.logger.debug(pipe, message, json_text(extra))
    return JSONResponse(
        {"duration": duration.to_json(), "result": {"loadModelStatus": status, "data": vector}}
    )
