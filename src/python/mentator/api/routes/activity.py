"""``GET /state/activity`` — the data of the stat page's charts.

``lastHour``: one entry per minute of the last hour from the service's own reports
(`api.activity.Activity`: requests by outcome, generated tokens and tokens/s, p50/p95 of the
whole time and of the time to the first token, the most requests seen waiting and running);
its ``totals`` equal the growth of ``mentator_requests_total`` and
``mentator_generation_tokens_total`` over that hour (since the start when it is younger).
``lastDay``: one entry per hour of the last 24 from the chat log (``savePrompt`` says whether
successes are in it; failures always are); None while the database is unavailable.
``shadow``: the shadow comparison's counts when shadowing is configured, else None.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mentator.api.deps import ContextDep
from mentator.api.metrics import MetricsDep
from mentator.context import ServiceContext
from mentator.storage.database import StorageError

router = APIRouter(prefix="/state", tags=["state"])


def _last_day(context: ServiceContext) -> dict[str, Any] | None:
    if context.chatlog is None:
        return None
    with contextlib.suppress(StorageError):  # recorded by the database's health
        return {
            "savePrompt": context.settings.log.save_prompt,
            "hours": context.chatlog.hourly(context.clock_ms()),
        }
    return None


@router.get("/activity", summary="The stat page's charts: the last hour by minute, the day by hour")
async def activity_route(context: ContextDep, metrics: MetricsDep) -> JSONResponse:
    activity = metrics.activity
    activity.sample(context.queue.waiting(), context.queue.running())
    return JSONResponse(
        {
            "lastHour": activity.to_json(),
            "lastDay": await asyncio.to_thread(_last_day, context),
            "shadow": context.shadow.stats().to_json() if context.shadow is not None else None,
        }
    )
