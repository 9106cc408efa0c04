"""The load and unload operations of the API (``POST /models/load``, ``/models/unload``): make a
model resident ahead of its requests, or free its memory now. Same admission, lookup and error
texts as a request (`slots`); not an exchange (no chat-log row: nothing was generated), but
logged."""

from __future__ import annotations

from dataclasses import dataclass

from mentator.engine.errors import EngineError
from mentator.engine.ports import LoadStatus, ResidentModel
from mentator.inference.slots import Slots, check_context_size, load_failure
from mentator.logging_protocol import LoggerProtocol

APP_PIPE = "APP"


@dataclass(frozen=True)
class LoadOrder:
    model: str
    gpulayer: float | None = None
    context_size: int | None = None
    keep_alive_s: float | None = None


@dataclass(frozen=True)
class ResidencyAnswer:
    model: str
    status: LoadStatus | None  # load: "load" or "exists"; unload: None
    unloaded: bool
    loaded_models: list[ResidentModel]


class Residency:
    """The residency use-case (built once per service)."""

    def __init__(self, *, slots: Slots, logger: LoggerProtocol) -> None:
        self._slots = slots
        self._logger = logger

    async def load(self, order: LoadOrder) -> ResidencyAnswer:
        engine = self._slots.engine()
        model = self._slots.find_model(order.model)
        check_context_size(model, order.context_size)
        try:
            status = await engine.load(
                model, order.gpulayer, order.context_size, order.keep_alive_s
            )
        except EngineError as error:
            raise load_failure(model, order.context_size, error) from error
        self._logger.debug(APP_PIPE, f'model "{model.name}" loaded on request ({status})')
        return ResidencyAnswer(model.name, status, False, list(engine.loaded_models()))

    async def unload(self, name: str) -> ResidencyAnswer:
        engine = self._slots.engine()
        model = self._slots.find_model(name)
        unloaded = await engine.unload(model.name)
        if unloaded:
            self._logger.debug(APP_PIPE, f'model "{model.name}" unloaded on request')
        return ResidencyAnswer(model.name, None, unloaded, list(engine.loaded_models()))
