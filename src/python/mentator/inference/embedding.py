"""Embeddings: the use-case behind ``POST /embedding`` and ``/v1/embeddings`` — one behaviour for
both (reference §2.5, with the port's residency fix).

The engine child always serves embeddings next to completions, so when the asked model is the one
loaded — and the request names no other ``gpulayer`` — the running child is reused with its
settings, whatever ``contextSize`` it was loaded with (the original reloaded the model whenever
it had one). Otherwise the model is loaded with the request's ``gpulayer`` (``/v1``: none) and
the default context. Empty text → ``[]``. Not stored in the chat log, not counted in /state stats.
"""

from __future__ import annotations

from dataclasses import dataclass

from mentator.engine.errors import EngineError
from mentator.engine.ports import EngineHandlePort, EngineManagerPort, LoadStatus
from mentator.inference.errors import EngineFailed, InferenceError
from mentator.inference.requests import Caller, EmbeddingRequest
from mentator.inference.slots import (
    ModelFinder,
    find_model,
    require_engine,
    run_on_engine,
    until_caller_leaves,
)
from mentator.inference.timing import Duration, Timing
from mentator.jsontext import json_text
from mentator.logging_protocol import LoggerProtocol
from mentator.scheduling import RequestQueue


@dataclass(frozen=True)
class EmbeddingAnswer:
    model_name: str
    vectors: list[list[float]]
    load_status: LoadStatus
    duration: Duration


def engine_settings_for(
    engine: EngineManagerPort, model_name: str, gpulayer: float | None
) -> tuple[float | None, int | None]:
    """(gpulayer, contextSize) to ask for: the loaded ones when they serve this model already."""
    loaded = engine.current()
    if (
        loaded is not None
        and loaded.name == model_name
        and (gpulayer is None or gpulayer == loaded.gpulayer)
    ):
        return loaded.gpulayer, loaded.context_size
    return gpulayer, None


class Embeddings:
    """The embedding use-case over one service's parts (`engine` None = still starting)."""

    def __init__(
        self,
        *,
        engine: EngineManagerPort | None,
        models: ModelFinder,
        queue: RequestQueue,
        logger: LoggerProtocol,
    ) -> None:
        self._engine = engine
        self._models = models
        self._queue = queue
        self._logger = logger

    async def embed(self, request: EmbeddingRequest, caller: Caller) -> EmbeddingAnswer:
        timing = Timing()
        try:
            answer = await until_caller_leaves(
                self._embed(request, timing), caller.left() if caller.left else None
            )
        except InferenceError as failure:
            failure.duration = timing.duration()
            self._logger.error(caller.pipe, caller.message, failure.message)
            raise
        extra = {
            "duration": answer.duration.to_json(),
            "loadModelStatus": answer.load_status,
            "vectorLen": len(answer.vectors[0]) if len(answer.vectors) == 1 else None,
            "inputs": len(answer.vectors),
        }
        self._logger.debug(caller.pipe, caller.message, json_text(extra))
        return answer

    async def _embed(self, request: EmbeddingRequest, timing: Timing) -> EmbeddingAnswer:
        engine = require_engine(self._engine)
        model = find_model(self._models, request.model)
        gpulayer, context_size = engine_settings_for(engine, model.name, request.gpulayer)

        async def work(handle: EngineHandlePort, status: LoadStatus) -> EmbeddingAnswer:
            vectors = [await handle.embed(text) for text in request.texts]
            return EmbeddingAnswer(model.name, vectors, status, timing.duration())

        try:
            return await run_on_engine(
                engine, self._queue, model, gpulayer, context_size, None, timing, work
            )
        except EngineError as error:
            raise EngineFailed(error.message) from error
