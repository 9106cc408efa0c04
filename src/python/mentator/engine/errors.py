"""Errors of the engine layer. The API maps them to status codes; messages are user-facing."""

from __future__ import annotations


class EngineError(RuntimeError):
    """Anything that went wrong in or with llama-server.

    `status` is the HTTP status llama-server answered with, when it answered at all.
    `unsent` is True when the request never reached the child (the connection was refused): the
    child did no work for it, so the caller may safely run it again on a fresh child.
    """

    def __init__(self, message: str, *, status: int | None = None, unsent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.unsent = unsent


class EngineNotFoundError(EngineError):
    """The engine folder or its llama-server is missing; the message says how to get one."""


class EngineStartError(EngineError):
    """A child did not become ready (exited, crashed, or timed out while loading the model)."""


class EngineExitedError(EngineError):
    """The child process died while a request was running on it."""

    def __init__(self, returncode: int | None, output_tail: str, *, unsent: bool = False) -> None:
        code = "unknown" if returncode is None else str(returncode)
        detail = output_tail.strip() or "no output"
        super().__init__(
            f"engine process exited unexpectedly (code {code}): {detail}", unsent=unsent
        )
        self.returncode = returncode
        self.output_tail = output_tail


class EngineConnectionError(EngineError):
    """The HTTP connection to the child failed (refused, reset, timed out)."""


class EngineRequestError(EngineError):
    """llama-server answered a request with an error status; `status` holds it."""


class ModelTooLargeError(EngineError):
    """A model that cannot be made resident: it does not fit the memory budget (or the memory
    free) even alone, or only pinned models hold the room. The message names the sizes and the
    budget."""
