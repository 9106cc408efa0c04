"""What the use-cases are asked: the inputs of `/prompt`, `/embedding` and the `/v1` routes,
already validated and translated by the HTTP layer (`api/requests.py`, `api/routes/openai.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mentator.engine.ports import Message


@dataclass(frozen=True)
class Caller:
    """Who asks, for the log lines (reference §3: pipe ``API.POST /prompt``, message
    ``[from <ip>] /prompt``), and how to tell that they left (a fresh awaitable per call that
    completes when the client closes the connection; None when that cannot be known)."""

    pipe: str
    message: str
    left: Callable[[], Awaitable[None]] | None = None
    route: str = ""  # the route's path (the metrics' label), e.g. ``/prompt``
    shadow_copy: bool = False  # the request is another service's shadow copy (never re-shadowed)


@dataclass(frozen=True)
class PromptFormat:
    use_grammar: bool
    json_schema: Any


@dataclass(frozen=True)
class PromptRequest:
    """A validated /prompt body; ``body`` is the coerced JSON (what the chat log stores)."""

    body: dict[str, Any]
    model: str
    gpulayer: float | None
    context_size: int | None
    system: str | None
    user: str
    duration_msec: float
    options: dict[str, Any] | None
    format: PromptFormat | None
    tool_server: list[str] | None
    keep_alive_s: float | None = None  # keepAlive: seconds the model stays once idle


CHAT_TIMEOUT_MS = 600_000


@dataclass(frozen=True)
class ChatRequest:
    """An OpenAI chat completion, in our terms: ``options`` uses our option names (only those
    the client gave), ``json_schema`` is the schema the answer must follow (None: free text).
    ``prompt`` set: a legacy text completion (``/v1/completions``) of that text as given, without
    the chat template (``messages`` is then empty)."""

    model: str
    messages: list[Message]
    options: dict[str, object]
    json_schema: Any | None = None
    prompt: str | None = None
    grammar: str | None = None  # a ready GBNF (tool calls); wins over ``json_schema``
    # The schema behind ``grammar`` (tool calls), for the closing step of a cut-off answer.
    closing_schema: Any | None = None
    body: Any = None  # the request as sent, for the chat log
    # OpenAI's API has no per-request time limit; the queue wait plus the generation are bounded
    # like /prompt's durationMsec, by this (a stuck request must not hold a slot forever).
    timeout_ms: int = CHAT_TIMEOUT_MS
    keep_alive_s: float | None = None  # keep_alive (Ollama's name): seconds the model stays


@dataclass(frozen=True)
class EmbeddingRequest:
    """Texts to embed with one model (`/embedding`: one text; `/v1/embeddings`: one or more)."""

    model: str
    texts: list[str]
    gpulayer: float | None = None
    keep_alive_s: float | None = None


def parse_keep_alive(value: object) -> float | None:
    """A keep-alive as a request or the config gives it, in seconds: a number of seconds, or a
    text ``"300"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1h30m"``; a negative value = forever
    (returned as -1). Raises ValueError (with what is accepted) otherwise."""
    if isinstance(value, bool):
        raise ValueError(_KEEP_ALIVE_HELP)
    if isinstance(value, int | float):
        return -1.0 if value < 0 else float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(_KEEP_ALIVE_HELP)
    text = value.strip().lower()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return -1.0 if number < 0 else number
    total = 0.0
    digits = ""
    seen_unit = False
    for char in text:
        if char.isdigit() or char == ".":
            digits += char
        elif char in _UNITS and digits:
            total += float(digits) * _UNITS[char]
            digits = ""
            seen_unit = True
        else:
            raise ValueError(_KEEP_ALIVE_HELP)
    if digits or not seen_unit:
        raise ValueError(_KEEP_ALIVE_HELP)
    return total


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_KEEP_ALIVE_HELP = (
    'keepAlive must be seconds (a number, e.g. 300) or a duration text such as "90s", "5m",'
    ' "1h", "1h30m"; 0 = unload when the request is done, a negative number = keep forever'
)
