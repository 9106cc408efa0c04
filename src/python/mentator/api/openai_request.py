"""What the two OpenAI completion routes (`routes/openai.py` chat, `routes/text_completions.py`
text) read alike: the sampling fields of their request schemas, and those fields under our
option names (config ``defaultOptions`` names, `config.options`)."""

from __future__ import annotations

from typing import Any

from mentator.api.coerce import JsonSchema
from mentator.api.errors import ApiError

# The request fields both routes accept, with their limits (OpenAI's).
SAMPLING_FIELDS: dict[str, JsonSchema] = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "max_tokens": {"type": "integer", "minimum": 1},
    "stop": {"description": "A string or an array of strings."},
    "seed": {"type": "integer", "minimum": 0},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "n": {"type": "integer", "minimum": 1, "maximum": 1, "description": "Only 1 is supported."},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
}

# OpenAI field → our option name.
OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxTokens",
    "max_completion_tokens": "maxTokens",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def chat_options(body: dict[str, Any]) -> dict[str, object]:
    """The request's OpenAI sampling fields under our option names (only those given)."""
    given: dict[str, object] = {
        ours: body[theirs] for theirs, ours in OPTION_FIELDS.items() if body.get(theirs) is not None
    }
    stop = body.get("stop")
    if isinstance(stop, str):
        given["stopSequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        given["stopSequences"] = stop
    elif stop is not None:
        raise ApiError(400, "body/stop must be a string or an array of strings")
    return given
