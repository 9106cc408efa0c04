"""``/state``, ``/state/version``, ``/state/models`` (reference §2.8, with port.md additions).

``/state`` keeps every field of the original and adds ``backend`` (the engine backend really in
use, its CPU variant, why it was chosen and why each higher tier was skipped, its devices, its
fallbacks: `BackendChoice.to_json`, the same object ``--detect-hardware`` prints) and
``queueRunning``. ``gpuInfo.type`` is that backend (``cpu``/``cuda``/``rocm``/``vulkan``).
``/state/version`` answers the built-in version (the original read ``package.json`` from the
working directory). ``/state/models`` only lists; ``?rescan=1`` rescans the folder first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mentator.api.deps import ContextDep, LoggerDep, RegistryDep, api_message, api_pipe
from mentator.api.errors import ApiError
from mentator.api.schemas import query_doc
from mentator.backends.choice import BackendChoice
from mentator.context import ServiceContext
from mentator.memory import memory_usage
from mentator.storage.database import StorageError
from mentator.version import VERSION

router = APIRouter(prefix="/state", tags=["state"])

HOUR_MS = 60 * 60 * 1000
STAT_WINDOWS = (("stats1h", 1 * HOUR_MS), ("stats3h", 3 * HOUR_MS), ("stats24h", 24 * HOUR_MS))
EMPTY_STATS = {
    "total": 0,
    "success": 0,
    "failed": 0,
    "avgPromptDuration": 0,
    "avgQueueDuration": 0,
    "p95PromptDuration": 0,
    "p95QueueDuration": 0,
}
_TRUE_WORDS = ("1", "true", "yes", "y")


def _gpu_info(context: ServiceContext, choice: BackendChoice | None) -> dict[str, object] | None:
    """The backend's GPU facts with ``usedVramMb`` measured now (the decision's value is from
    the start, before any model was loaded; it stays when nothing can be measured)."""
    if choice is None:
        return None
    info = choice.gpu_info()
    if choice.is_gpu:
        used = context.vram.used_mb(choice.backend)
        if used is not None:
            info["usedVramMb"] = used
    return info


def state_json(context: ServiceContext) -> dict[str, Any]:
    """/state reads most parts of the service: it is the one route given the whole context."""
    now = context.clock_ms()
    memory = memory_usage()
    loaded = context.engine.current() if context.engine is not None else None
    choice = context.current_backend()
    state: dict[str, Any] = {
        "serverStartTimestamp": context.started_ms,
        "serverUptimeSeconds": max(0, (now - context.started_ms) // 1000),
        "currentModel": loaded.to_json() if loaded is not None else None,
        # Every resident model, most recently used first (currentModel is the first of them).
        "loadedModels": [entry.to_json() for entry in context.engine.loaded_models()]
        if context.engine is not None
        else [],
        "maxLoadedModels": context.settings.max_loaded_models,
        "gpuInfo": _gpu_info(context, choice),
        "memoryUsageMb": memory.rss_mb,
        "memoryHeapMb": memory.heap_mb,
        "memoryExternalMb": memory.external_mb,
        "queueSize": context.queue.waiting(),
        "queueRunning": context.queue.running(),
        "savePromptEnabled": context.settings.log.save_prompt,
    }
    for key, window in STAT_WINDOWS:
        stats = dict(EMPTY_STATS)
        if context.chatlog is not None:
            # A failure is recorded by the database's health; the stats read as empty.
            with contextlib.suppress(StorageError):
                stats = context.chatlog.stats(now, window)
        state[key] = stats
    # The decision's one rendering (`BackendChoice.to_json`), as --detect-hardware prints it.
    state["backend"] = choice.to_json() if choice is not None else None
    # The run-time tripwire against the canary's speed (`inference.tripwire`).
    state["backendSpeed"] = context.speed.to_json()
    return state


@router.get("", summary="Runtime state and request statistics")
async def state_route(context: ContextDep) -> JSONResponse:
    return JSONResponse(await asyncio.to_thread(state_json, context))


@router.get("/version", summary="Service version")
async def version_route() -> JSONResponse:
    return JSONResponse({"version": VERSION})


@router.get(
    "/models",
    summary="Models found in the model folder",
    openapi_extra=query_doc(
        {
            "type": "object",
            "properties": {
                "rescan": {"type": "string", "description": "1 = rescan the folder first."}
            },
        }
    ),
)
async def models_route(request: Request, registry: RegistryDep, logger: LoggerDep) -> JSONResponse:
    logger.trace(api_pipe(request), api_message(request))
    if request.query_params.get("rescan", "").strip().lower() in _TRUE_WORDS:
        try:
            await asyncio.to_thread(registry.rescan)
        except OSError as error:
            raise ApiError(500, f"rescan failed: {error}") from error
    return JSONResponse({"models": [model.to_api() for model in registry.models()]})
