"""Embeddings: the use-case behind ``POST /embedding`` and ``/v1/embeddings`` — one behaviour for
both (reference §2.5, with the port's residency fix).

The engine child always serves embeddings next to completions, so when the asked model is
resident — and the request names no other ``gpulayer`` — its running child is reused with its
settings, whatever ``contextSize`` it was loaded with (the original reloaded the model whenever
it had one). Otherwise the model is loaded with the request's ``gpulayer`` (``/v1``: none) and
the default context. Empty text → ``[]``. Not stored in the chat log, not counted in /state stats.
"""

from __future__ import annotations

from dataclasses import dataclass

from mentator.engine.errors import EngineError
from mentator.engine.ports import EngineHandlePort, EngineManagerPort, LoadStatus
from mentator.inference.errors import EngineFailed, InferenceError
from mentator.inference.exchange import Exchange, ExchangeRecorder
from mentator.inference.requests import Caller, EmbeddingRequest
from mentator.inference.slots import Placement, Slots
from mentator.inference.timing import Duration


@dataclass(frozen=True)
class EmbeddingAnswer:
    model_name: str
    vectors: list[list[float]]
    load_status: LoadStatus
    duration: Duration


def engine_settings_for(
    engine: EngineManagerPort, model_name: str, gpulayer: float | None
) -> tuple[float | None, int | None]:
    """(gpulayer, contextSize) to ask for: the loaded ones when the model is resident already."""
    loaded = engine.resident(model_name)
    if loaded is not None and (gpulayer is None or gpulayer == loaded.gpulayer):
        return loaded.gpulayer, loaded.context_size
    return gpulayer, None


def _embedding_failed(error: EngineError) -> InferenceError:
    return EngineFailed(error.message)


class Embeddings:
    """The embedding use-case (built once per service)."""

    def __init__(self, *, slots: Slots, recorder: ExchangeRecorder) -> None:
        self._slots = slots
        self._recorder = recorder

    async def embed(self, request: EmbeddingRequest, caller: Caller) -> EmbeddingAnswer:
        exchange = self._recorder.begin(
            caller, "embedding", model=self._slots.model_name(request.model)
        )
        model_name, vectors, status = await exchange.run(self._embed(request, exchange))
        exchange.succeeded(
            {},
            loadModelStatus=status,
            vectorLen=len(vectors[0]) if len(vectors) == 1 else None,
            inputs=len(vectors),
        )
        return EmbeddingAnswer(model_name, vectors, status, exchange.duration)

    async def _embed(
        self, request: EmbeddingRequest, exchange: Exchange
    ) -> tuple[str, list[list[float]], LoadStatus]:
        engine = self._slots.engine()
        model = self._slots.find_model(request.model)
        gpulayer, context_size = engine_settings_for(engine, model.name, request.gpulayer)

        async def work(
            handle: EngineHandlePort, status: LoadStatus
        ) -> tuple[str, list[list[float]], LoadStatus]:
            return model.name, [await handle.embed(text) for text in request.texts], status

        placement = Placement(model, gpulayer, context_size, request.keep_alive_s)
        return await self._slots.run(placement, None, exchange.timing, work, _embedding_failed)
