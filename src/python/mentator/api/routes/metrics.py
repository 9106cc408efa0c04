"""``/metrics`` — Prometheus text exposition of `api.metrics.ApiMetrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mentator.api.deps import ContextDep
from mentator.api.metrics import MetricsDep

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=PlainTextResponse,  # documents text/plain; the answer sets its exact type
)
async def metrics_route(context: ContextDep, metrics: MetricsDep) -> Response:
    return Response(await metrics.render(context), media_type=CONTENT_TYPE_LATEST)
