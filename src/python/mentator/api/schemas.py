"""OpenAPI fragments shared by the routers (documentation only; validation is `requests.py`).

Request bodies are read by hand (to answer the original's exact error texts), so FastAPI cannot
infer their schemas; `json_body_doc` attaches the validation schema itself to the operation.
"""

from __future__ import annotations

from typing import Any

from mentator.api.coerce import JsonSchema

DURATION_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "promptMsec": {"type": "integer", "description": "Milliseconds spent outside the queue."},
        "queueMsec": {"type": "integer", "description": "Milliseconds spent waiting in the queue."},
    },
}

ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {"duration": DURATION_SCHEMA, "error": {"type": "string"}},
}

CHECK_RESULT_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "Empty when the check passed."}},
}


def json_body_doc(schema: JsonSchema, *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON request body with ``schema``."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def json_response_doc(schema: JsonSchema, description: str = "OK") -> dict[str, Any]:
    """``openapi_extra`` describing the 200 answer (plus the shared error shape)."""
    return {
        "responses": {
            "200": {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            },
            "400": {
                "description": "Invalid request",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        }
    }


def query_doc(schema: JsonSchema) -> dict[str, Any]:
    """``openapi_extra`` listing query parameters from an object schema."""
    required = set(schema.get("required", ()))
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {key: value for key, value in prop.items() if key != "description"},
                "description": prop.get("description", ""),
            }
            for name, prop in schema.get("properties", {}).items()
        ]
    }


def loaded_result_schema(**fields: JsonSchema) -> JsonSchema:
    """The success envelope of a route that loads a model: ``duration`` and a ``result`` with
    ``loadModelStatus`` and the route's own ``fields``."""
    return {
        "type": "object",
        "properties": {
            "duration": DURATION_SCHEMA,
            "result": {
                "type": "object",
                "properties": {
                    "loadModelStatus": {"type": "string", "enum": ["load", "exists"]},
                    **fields,
                },
            },
        },
    }
