"""``GET /models/loaded``, ``POST /models/load``, ``POST /models/unload``: the resident models
(issue 21) and the operations on them; the work is `inference.residency.Residency`. Guarded by
the API keys like every route that is not public (`api.auth`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.coerce import JsonSchema
from mentator.api.deps import ContextDep, ResidencyDep
from mentator.api.requests import KEEP_ALIVE_SCHEMA, check, keep_alive_of
from mentator.api.schemas import json_body_doc, json_response_doc
from mentator.inference.residency import LoadOrder, ResidencyAnswer

router = APIRouter(prefix="/models", tags=["models"])

RESIDENT_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "A model held in memory (times in ms since the epoch).",
    "properties": {
        "name": {"type": "string"},
        "backend": {"type": "string", "description": "cpu, cuda, rocm or vulkan"},
        "gpulayer": {"type": ["number", "null"]},
        "contextSize": {"type": ["integer", "null"]},
        "sizeMb": {"type": "integer", "description": "The model file."},
        "estimatedMemoryMb": {
            "type": "integer",
            "description": "Weights + KV cache for the context + buffers (the budget's measure).",
        },
        "estimatedVramMbPerGpu": {"type": "integer"},
        "loadedAt": {"type": "integer"},
        "lastUsedAt": {"type": "integer"},
        "expiresAt": {
            "type": ["integer", "null"],
            "description": "When it is unloaded if still idle; null: kept until evicted.",
        },
        "pinned": {"type": "boolean"},
        "inFlight": {"type": "integer", "description": "Requests using it now."},
        "alive": {"type": "boolean"},
    },
}
LOADED_LIST_SCHEMA: JsonSchema = {"type": "array", "items": RESIDENT_SCHEMA}

LOAD_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "description": "Model name as listed by /state/models."},
        "gpulayer": {"type": "number", "minimum": 0},
        "contextSize": {"type": "integer", "minimum": 512},
        "keepAlive": KEEP_ALIVE_SCHEMA,
    },
}
UNLOAD_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["model"],
    "properties": {"model": {"type": "string"}},
}
ANSWER_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "loadModelStatus": {"type": ["string", "null"], "enum": ["load", "exists", None]},
        "unloaded": {"type": "boolean"},
        "loadedModels": LOADED_LIST_SCHEMA,
    },
}


def _answer(answer: ResidencyAnswer) -> JSONResponse:
    return JSONResponse(
        {
            "model": answer.model,
            "loadModelStatus": answer.status,
            "unloaded": answer.unloaded,
            "loadedModels": [entry.to_json() for entry in answer.loaded_models],
        }
    )


@router.get(
    "/loaded",
    summary="Models held in memory now",
    openapi_extra=json_response_doc(
        {"type": "object", "properties": {"loadedModels": LOADED_LIST_SCHEMA}}
    ),
)
async def loaded_route(context: ContextDep) -> JSONResponse:
    engine = context.engine
    entries = engine.loaded_models() if engine is not None else []
    return JSONResponse({"loadedModels": [entry.to_json() for entry in entries]})


@router.post(
    "/load",
    summary="Load a model now (evicting idle ones when the limits ask)",
    openapi_extra={**json_body_doc(LOAD_SCHEMA), **json_response_doc(ANSWER_SCHEMA)},
)
async def load_route(request: Request, residency: ResidencyDep) -> JSONResponse:
    body: dict[str, Any] = check(LOAD_SCHEMA, await read_body(request))
    order = LoadOrder(
        model=body["model"],
        gpulayer=body.get("gpulayer"),
        context_size=body.get("contextSize"),
        keep_alive_s=keep_alive_of(body, "keepAlive"),
    )
    return _answer(await residency.load(order))


@router.post(
    "/unload",
    summary="Unload a model once its requests in flight are done",
    openapi_extra={**json_body_doc(UNLOAD_SCHEMA), **json_response_doc(ANSWER_SCHEMA)},
)
async def unload_route(request: Request, residency: ResidencyDep) -> JSONResponse:
    body: dict[str, Any] = check(UNLOAD_SCHEMA, await read_body(request))
    return _answer(await residency.unload(body["model"]))
