"""``/health`` — one word for orchestrators and container health checks.

* ``starting`` (HTTP 503): the first model scan or the backend selection is not finished;
* ``degraded`` (HTTP 200, the service answers but something needs a look): no models found, the
  engine child of the loaded model died (it restarts on the next request), or the database
  failed its last operation / could not be opened;
* ``ready`` (HTTP 200) otherwise.
The answer lists the reasons and a few facts, so a human reading it knows what to fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mentator.api.deps import ServicesDep
from mentator.service import Services
from mentator.storage.database import StorageError
from mentator.version import VERSION

router = APIRouter(tags=["monitoring"])


def _database_problem(services: Services) -> str | None:
    if services.database is None:
        return f"database unavailable: {services.db_error or 'not opened'}"
    try:
        services.database.pragma("user_version")
    except StorageError as error:
        return f"database unreadable: {error}"
    except Exception as error:
        return f"database unreadable: {error}"
    if services.health.last_db_failure is not None:
        return f"database write failed: {services.health.last_db_failure}"
    return None


def health_json(services: Services) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body)."""
    if not services.ready:
        waiting = []
        if not services.registry.scanned:
            waiting.append("first model scan")
        if services.engine is None:
            waiting.append("engine backend selection")
        return 503, {"status": "starting", "version": VERSION, "waitingFor": waiting}
    reasons: list[str] = []
    models = services.registry.models()
    if not models:
        reasons.append(f'no models found in "{services.registry.model_dir}"')
    if services.engine is not None and services.engine.engine_alive() is False:
        reasons.append(
            "the engine process of the loaded model exited; it restarts on the next request"
        )
    db_problem = _database_problem(services)
    if db_problem is not None:
        reasons.append(db_problem)
    backend = services.current_backend()
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ready",
        "version": VERSION,
        "reasons": reasons,
        "models": len(models),
        "backend": backend.backend if backend is not None else None,
        "queue": {"waiting": services.queue.waiting(), "running": services.queue.running()},
    }
    return 200, body


@router.get("/health", summary="Service health: starting, ready or degraded")
async def health_route(services: ServicesDep) -> JSONResponse:
    status, body = await run_in_threadpool(health_json, services)
    return JSONResponse(body, status_code=status)
