"""Prometheus metrics of one app instance (the route is `routes/metrics.py`; every metric's name
and meaning, and the bucket choices, are in the README's "Metrics" section).

Each app owns its `CollectorRegistry` (no process-global default registry), so two apps in one
test process never share counters. Label values are bounded: HTTP counts are labelled by the route
*template* (``/log/core/byid``, never the raw URL; unmatched paths count as ``<unmatched>``);
inference metrics by the route *family* (`FAMILIES`, else ``other``) and by the model's registry
name (a name no model has is ``other``, and past `MAX_MODEL_LABELS` names every new one is
``other`` too). Gauges that mirror live state (queue, loaded model, model count, the engine's KV
cache and restarts) are read at scrape time from the services, so they can never drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mentator.api.activity import Activity
from mentator.applog import wall_clock_ms
from mentator.context import ServiceContext
from mentator.engine.ports import KvCacheReport, ResidencyEvent
from mentator.inference.exchange import SUCCESS_OUTCOME, ExchangeReport
from mentator.inference.shadowing import ShadowStats

# The legacy histograms' buckets (mentator_prompt_duration_seconds, mentator_queue_wait_seconds),
# also used for the whole request and the queue wait: from 50 ms (a short GPU answer) to an hour
# (a long CPU generation under a generous durationMsec).
_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Time to the first token: a GPU answers a short prompt in 10-100 ms; a CPU needs about 0.1 s per
# prompt token for small models (measured: 3.4 s for 31 tokens of SmolLM2-135M on 2 shared
# cores), so long prompts on a CPU take minutes; a model load lands in the top buckets.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# Time per output token: 2-30 ms on a GPU (100-500 tokens/s down to 30), 30-300 ms on a CPU
# (measured: 155-250 ms/token for SmolLM2-135M on 2 shared cores), up to seconds for a large
# model that does not fit.
TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)

# Route path → family (the ``family`` label).
FAMILIES: Mapping[str, str] = {
    "/prompt": "prompt",
    "/v1/chat/completions": "v1-chat",
    "/v1/completions": "v1-completions",
    "/embedding": "embedding",
    "/v1/embeddings": "embedding",
}
OTHER = "other"
MAX_MODEL_LABELS = 64


def family_of(route: str) -> str:
    return FAMILIES.get(route, OTHER)


def decoding_of(report: ExchangeReport) -> str:
    """``constrained`` (a grammar decoded the answer), ``free``, or ``none`` (embeddings)."""
    if report.constrained is None:
        return "none"
    return "constrained" if report.constrained else "free"


class ModelLabels:
    """Bounded model label values: the registry's names (None → ``other``), at most ``limit``
    distinct ones (a model folder with thousands of files must not make thousands of series)."""

    def __init__(self, limit: int = MAX_MODEL_LABELS) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, name: str | None) -> str:
        if name is None:
            return OTHER
        if name not in self._seen:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(name)
        return name


class EngineCollector(Collector):
    """What the engine reports of itself, from the last scrape's snapshot (`ApiMetrics.render`):
    restarts by model and the running child's KV cache."""

    def __init__(self, labels: ModelLabels) -> None:
        self._labels = labels
        self.restarts: Mapping[str, int] = {}
        self.kv: Sequence[KvCacheReport] = ()

    def _families(self) -> tuple[CounterMetricFamily, list[GaugeMetricFamily]]:
        restarts = CounterMetricFamily(
            "mentator_engine_restarts",
            "Engine children found dead (exited on their own) and restarted, by model.",
            labels=["model"],
        )
        gauges = [
            GaugeMetricFamily(
                "mentator_engine_kv_cache_tokens",
                "Tokens held in the running engine's KV cache (all slots; an idle slot keeps its "
                "last conversation for prompt caching), from llama-server's /slots.",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "mentator_engine_kv_cache_capacity_tokens",
                "Tokens the running engine's KV cache can hold (the slots' context sizes summed).",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "mentator_engine_kv_cache_usage_ratio",
                "mentator_engine_kv_cache_tokens / mentator_engine_kv_cache_capacity_tokens.",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "mentator_engine_slots",
                "Slots (requests decoded together) of the running engine.",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "mentator_engine_slots_busy",
                "Slots of the running engine working on a request now.",
                labels=["model"],
            ),
        ]
        return restarts, gauges

    def describe(self) -> Iterable[Metric]:
        restarts, gauges = self._families()
        return [restarts, *gauges]

    def collect(self) -> Iterable[Metric]:
        restarts, gauges = self._families()
        for model, count in sorted(self.restarts.items()):
            restarts.add_metric([self._labels(model)], count)
        for kv in self.kv:
            label = [self._labels(kv.model)]
            values = (
                kv.used_tokens,
                kv.capacity_tokens,
                kv.usage_ratio,
                kv.slots,
                kv.busy_slots,
            )
            for gauge, value in zip(gauges, values, strict=True):
                gauge.add_metric(label, value)
        return [restarts, *gauges]


class ShadowCollector(Collector):
    """Shadow traffic's counts (`inference.shadowing.ShadowStats`), from the last scrape's
    snapshot; nothing while shadowing is off."""

    def __init__(self) -> None:
        self.stats: ShadowStats | None = None

    def _families(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        return [
            CounterMetricFamily(
                "mentator_shadow_identical",
                "Shadow copies whose answer (data) equalled the primary's.",
            ),
            CounterMetricFamily(
                "mentator_shadow_different",
                "Shadow copies answered differently (the shadow table holds the JSON diff).",
            ),
            CounterMetricFamily(
                "mentator_shadow_error",
                "Shadow copies that failed on either side (unreachable, an error status).",
            ),
            CounterMetricFamily(
                "mentator_shadow_dropped",
                "Sampled copies dropped because the shadow queue (shadowQueue) was full.",
            ),
            GaugeMetricFamily("mentator_shadow_queued", "Shadow copies waiting to be sent."),
        ]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        stats = self.stats
        if stats is None:
            return []
        values = (stats.identical, stats.different, stats.error, stats.dropped, stats.queued)
        for family, value in zip(families, values, strict=True):
            family.add_metric([], value)
        return families


class ApiMetrics:
    """The instruments; the use-cases' exchanges record into them (`exchange_ended`), the HTTP
    middleware counts answers, `/metrics` renders them. The same reports feed the stat page's
    last hour (`activity`), so its totals are these counters' totals."""

    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.activity = Activity(clock_ms)
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_labels = ModelLabels()
        self.requests = Counter(
            "mentator_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.prompt_seconds = Histogram(
            "mentator_prompt_duration_seconds",
            "Time of a completion outside the queue (options, grammar, model load, generation).",
            ["route"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "mentator_queue_wait_seconds",
            "Time a request waited for a free engine slot.",
            ["route"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.tokens_generated = Counter(
            "mentator_tokens_generated",
            "Tokens generated by the engine.",
            ["route"],
            registry=self.registry,
        )
        inference = ["model", "family"]
        self.inference_requests = Counter(
            "mentator_requests",
            "Requests a use-case answered, by model, route family, outcome (ok, schema_refused,"
            " answer_rejected, ...) and decoding (constrained by a grammar, free, none).",
            [*inference, "outcome", "decoding"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "mentator_request_duration_seconds",
            "Whole time of an answered request, from arrival to the answer (queue included).",
            inference,
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.request_queue_seconds = Histogram(
            "mentator_request_queue_wait_seconds",
            "Time an answered request waited for a free engine slot.",
            inference,
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.first_token_seconds = Histogram(
            "mentator_time_to_first_token_seconds",
            "Time from arrival to the first generated token (queue and model load included).",
            inference,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.per_token_seconds = Histogram(
            "mentator_time_per_output_token_seconds",
            "Mean time between generated tokens after the first, per answered request.",
            inference,
            buckets=TPOT_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "mentator_prompt_tokens",
            "Prompt tokens the engine read (the last round's prompt for a tool loop).",
            inference,
            registry=self.registry,
        )
        self.generation_tokens = Counter(
            "mentator_generation_tokens",
            "Tokens the engine generated (failed and abandoned requests included).",
            inference,
            registry=self.registry,
        )
        self.queue_waiting = Gauge(
            "mentator_queue_waiting", "Requests waiting for an engine slot.", registry=self.registry
        )
        self.queue_running = Gauge(
            "mentator_queue_running", "Requests holding an engine slot.", registry=self.registry
        )
        self.models_available = Gauge(
            "mentator_models_available",
            "GGUF models found in the model folder.",
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "mentator_model_loaded",
            "1 for each model held in memory now (labels say which and on which backend).",
            ["model", "backend"],
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "mentator_models_loaded",
            "Models held in memory now (each in its own llama-server).",
            registry=self.registry,
        )
        self.model_loads = Counter(
            "mentator_model_loads",
            "Model loads, by model and why (request, restart, api).",
            ["model", "reason"],
            registry=self.registry,
        )
        self.model_evictions = Counter(
            "mentator_model_evictions",
            "Models unloaded, by model and why (capacity: maxLoadedModels; memory: the budget or"
            " the memory free; expired: keepAlive; reload: other settings asked; crashed;"
            " requested; shutdown).",
            ["model", "reason"],
            registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "mentator_model_load_seconds",
            "Time to start a model's llama-server until it answers (the model load).",
            ["model"],
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640),
            registry=self.registry,
        )
        self._residency_seq = 0  # the last load/eviction event counted
        self.backend_slow = Gauge(
            "mentator_backend_slow",
            "1 while the backend generates below 0.3x of the speed its start-up canary measured,"
            " several requests in a row (/health says degraded).",
            registry=self.registry,
        )
        self.backend_slowdowns = Counter(
            "mentator_backend_slowdowns",
            "How often the backend speed tripwire tripped.",
            registry=self.registry,
        )
        self._slowdowns_seen = 0
        self.engine = EngineCollector(self.model_labels)
        self.registry.register(self.engine)
        self.shadow = ShadowCollector()
        self.registry.register(self.shadow)

    def exchange_ended(self, report: ExchangeReport) -> None:
        """`inference.exchange.ExchangeObserver`. Every exchange is counted by outcome; the
        latencies are of answered requests; the tokens of every request that generated some (a
        stream the client left, an answer rejected after generation)."""
        self.activity.exchange_ended(report)
        labels = (self.model_labels(report.model), family_of(report.route))
        self.inference_requests.labels(*labels, report.outcome, decoding_of(report)).inc()
        if report.prompt_tokens:
            self.prompt_tokens.labels(*labels).inc(report.prompt_tokens)
        if report.tokens:
            self.generation_tokens.labels(*labels).inc(report.tokens)
        duration = report.duration
        if report.outcome == SUCCESS_OUTCOME:
            total_s = (duration.prompt_msec + duration.queue_msec) / 1000
            self.request_seconds.labels(*labels).observe(total_s)
            self.request_queue_seconds.labels(*labels).observe(duration.queue_msec / 1000)
            if report.first_token_s is not None:
                self.first_token_seconds.labels(*labels).observe(report.first_token_s)
            if report.per_token_s is not None:
                self.per_token_seconds.labels(*labels).observe(report.per_token_s)
        self._legacy(report)

    def _legacy(self, report: ExchangeReport) -> None:
        """The first metrics, by route path: the durations of answered completions; the tokens
        of every completion that generated some."""
        if report.kind != "completion":
            return
        route = report.route
        if report.code == 200:
            self.prompt_seconds.labels(route).observe(report.duration.prompt_msec / 1000)
            self.queue_seconds.labels(route).observe(report.duration.queue_msec / 1000)
        if report.tokens:
            self.tokens_generated.labels(route).inc(report.tokens)

    async def render(self, context: ServiceContext) -> bytes:
        """Refresh the live gauges from ``context`` (asking the engine for its KV cache) and
        return the exposition text."""
        waiting, running = context.queue.waiting(), context.queue.running()
        self.activity.sample(waiting, running)
        self.queue_waiting.set(waiting)
        self.queue_running.set(running)
        self.models_available.set(len(context.registry.models()))
        self.backend_slow.set(1 if context.speed.degraded else 0)
        if context.speed.trips > self._slowdowns_seen:
            self.backend_slowdowns.inc(context.speed.trips - self._slowdowns_seen)
            self._slowdowns_seen = context.speed.trips
        self.model_loaded.clear()
        engine = context.engine
        resident = engine.loaded_models() if engine is not None else []
        for entry in resident:
            self.model_loaded.labels(self.model_labels(entry.name), entry.backend).set(1)
        self.models_loaded.set(len(resident))
        if engine is not None:
            self._count_residency(engine.residency_events(self._residency_seq))
        self.engine.restarts = engine.restarts() if engine is not None else {}
        self.engine.kv = await engine.kv_caches() if engine is not None else ()
        self.shadow.stats = context.shadow.stats() if context.shadow is not None else None
        return generate_latest(self.registry)

    def _count_residency(self, events: Sequence[ResidencyEvent]) -> None:
        """Loads and evictions since the last scrape (the manager numbers them)."""
        for event in events:
            self._residency_seq = max(self._residency_seq, event.seq)
            model = self.model_labels(event.model)
            if event.kind == "load":
                self.model_loads.labels(model, event.reason).inc()
                self.model_load_seconds.labels(model).observe(event.seconds)
            else:
                self.model_evictions.labels(model, event.reason).inc()

    def exported_names(self) -> set[str]:
        """Every sample name `/metrics` can show (histograms' ``_bucket``/``_sum``/``_count``,
        counters' ``_total``/``_created``): what a dashboard query may name."""
        names: set[str] = set()
        # The shadow's families exist only while shadowing is on: named from their description.
        for family in [*self.registry.collect(), *self.shadow.describe()]:
            names.update(_sample_names(family))
        return names


def _sample_names(family: Metric) -> set[str]:
    if family.type == "counter":
        return {f"{family.name}_total", f"{family.name}_created"}
    if family.type == "histogram":
        return {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created")}
    return {family.name}


class MetricsMiddleware:
    """Pure ASGI middleware counting every HTTP answer (it does not wrap the body stream, so
    streaming responses and client-disconnect detection are unaffected)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()


async def get_metrics(request: Request) -> ApiMetrics:  # async: no thread-pool hop (deps.py)
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
