"""``/health`` — one word for orchestrators and container health checks.

* ``draining`` (HTTP 503): the service got SIGTERM and is shutting down; new inference requests
  get 503, the ones in flight finish (``inFlight`` counts them). A load balancer's readiness check
  takes the instance out of rotation on this answer while it still accepts connections;
* ``starting`` (HTTP 503): the first model scan or the backend selection is not finished;
* ``failed`` (HTTP 503): the startup raised an error (``reason`` says which); the service will
  not become ready without a restart, so the container's HEALTHCHECK turns unhealthy;
* ``degraded`` (HTTP 200, the service answers but something needs a look): no models found, the
  engine child of the loaded model died (it restarts on the next request), the backend generates
  far slower than its start-up canary measured (`inference.tripwire`), or the database
  failed its last operation / could not be opened;
* ``ready`` (HTTP 200) otherwise.
The answer lists the reasons and a few facts, so a human reading it knows what to fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mentator.api.deps import ContextDep
from mentator.context import ServiceContext
from mentator.storage.database import StorageError
from mentator.version import VERSION

router = APIRouter(tags=["monitoring"])


def _database_problem(context: ServiceContext) -> str | None:
    if context.database is None:
        return f"database unavailable: {context.db_error or 'not opened'}"
    try:
        context.database.pragma("user_version")
    except (StorageError, Exception) as error:
        return f"database unreadable: {error}"
    return context.health.problem()


def health_json(context: ServiceContext) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body). /health weighs every part: it gets the whole context."""
    if context.drain.draining:
        return 503, {
            "status": "draining",
            "version": VERSION,
            "reason": "shutting down: no new requests; the ones in flight finish",
            "inFlight": context.queue.waiting() + context.queue.running(),
            "drainingForSec": round(context.drain.elapsed_s(), 1),
        }
    if context.startup_error is not None:
        return 503, {"status": "failed", "version": VERSION, "reason": context.startup_error}
    if not context.ready:
        waiting = []
        if not context.registry.scanned:
            waiting.append("first model scan")
        if context.engine is None:
            waiting.append("engine backend selection")
        return 503, {"status": "starting", "version": VERSION, "waitingFor": waiting}
    reasons: list[str] = []
    models = context.registry.models()
    if not models:
        reasons.append(f'no models found in "{context.registry.model_dir}"')
    if context.engine is not None and context.engine.engine_alive() is False:
        dead = [m.name for m in context.engine.loaded_models() if not m.alive]
        which = ", ".join(f'"{name}"' for name in dead) or "a loaded model"
        reasons.append(
            f"the engine process of {which} exited; it restarts on that model's next request"
        )
    if context.speed.reason is not None:
        reasons.append(context.speed.reason)
    db_problem = _database_problem(context)
    if db_problem is not None:
        reasons.append(db_problem)
    backend = context.current_backend()
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ready",
        "version": VERSION,
        "reasons": reasons,
        "models": len(models),
        "backend": backend.backend if backend is not None else None,
        "queue": {"waiting": context.queue.waiting(), "running": context.queue.running()},
    }
    return 200, body


@router.get("/health", summary="Service health: starting, ready, degraded, failed or draining")
async def health_route(context: ContextDep) -> JSONResponse:
    status, body = await run_in_threadpool(health_json, context)
    return JSONResponse(body, status_code=status)
