"""``POST /embedding`` — the embedding vector of one text (reference §2.5); the work is
`inference.embedding.Embeddings`, shared with ``/v1/embeddings``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.body import read_body
from mentator.api.deps import CallerDep, EmbeddingsDep
from mentator.api.requests import EMBEDDING_SCHEMA, parse_embedding
from mentator.api.schemas import json_body_doc, json_response_doc, loaded_result_schema
from mentator.inference.envelope import success_envelope

router = APIRouter(tags=["main"])

_SUCCESS_SCHEMA = loaded_result_schema(data={"type": "array", "items": {"type": "number"}})


@router.post(
    "/embedding",
    summary="Embedding vector of a text",
    openapi_extra={**json_body_doc(EMBEDDING_SCHEMA), **json_response_doc(_SUCCESS_SCHEMA)},
)
async def embedding_route(
    request: Request, embeddings: EmbeddingsDep, caller: CallerDep
) -> JSONResponse:
    parsed = parse_embedding(await read_body(request))
    answer = await embeddings.embed(parsed, caller)
    result = {"loadModelStatus": answer.load_status, "data": answer.vectors[0]}
    return JSONResponse(success_envelope(result, answer.duration))
