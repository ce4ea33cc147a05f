"""Prometheus metrics: what ``GET /metrics`` serves.

One :class:`Metrics` per application, on its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide default, so two apps in one process never mix their numbers). It is fed
from the pipeline's completion path (:meth:`Metrics.finished`, called with the ``complete`` entry)
and from the reliability layer (:meth:`Metrics.attempt`, :meth:`Metrics.circuit`); each feed is a
handful of counter increments.

With ``llmrouter serve --workers N`` the runner points ``PROMETHEUS_MULTIPROC_DIR`` at a
per-run directory before the workers fork; every worker then writes its values to memory-mapped
files there and a scrape answered by any worker merges all of them (prometheus-client's
multiprocess mode). Gauges count live workers only (``livesum``/``livemax``): the runner calls
:func:`worker_exited` for each worker that stops.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from llmrouter.errors import ProviderError, ProviderTimeout

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable naming the multiprocess directory (prometheus-client's own name)."""
TTFT_STATE = "_ttft_s"
"""``ctx.state`` key where the stream relay leaves the seconds from arrival to the first byte sent."""
MAX_MODEL_LABELS = 500
"""Distinct ``model`` label values kept per app; later ones are counted under ``other``. Clients
choose model names, and every new value is a new series held in memory forever."""

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its name as scraped, type, labels and help text."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str

    def sample_names(self) -> frozenset[str]:
        """Every sample name a scrape can show for this metric."""
        if self.type == "counter":
            return frozenset({self.name, self.name.removesuffix("_total") + "_created"})
        if self.type == "histogram":
            return frozenset({self.name + s for s in ("_bucket", "_sum", "_count", "_created")})
        return frozenset({self.name})


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("llmrouter_requests_total", "counter", ("endpoint", "provider", "model", "status"),
               "Requests answered, by endpoint, provider, upstream model and HTTP status."),
    MetricSpec("llmrouter_request_duration_seconds", "histogram", ("provider",),
               "Seconds from a request's arrival to its last byte, by provider."),
    MetricSpec("llmrouter_time_to_first_token_seconds", "histogram", ("provider",),
               "Streams only: seconds from a request's arrival to the first byte of the reply."),
    MetricSpec("llmrouter_tokens_total", "counter", ("provider", "model", "direction"),
               "Tokens reported by providers, direction input or output."),
    MetricSpec("llmrouter_cost_usd_total", "counter", ("provider", "model"),
               "Cost in US dollars at each provider's cost_per_1m_tokens."),
    MetricSpec("llmrouter_upstream_attempts_total", "counter", ("provider", "outcome"),
               "Calls to providers (retries and failovers included), by outcome."),
    MetricSpec("llmrouter_circuit_open", "gauge", ("provider", "model"),
               "1 while the circuit breaker of a provider (and upstream model) is open or half-open."),
    MetricSpec("llmrouter_in_flight", "gauge", (), "Requests being handled now."),
)
SPEC_BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in SPECS}

OUTCOMES = ("success", "timeout", "unreachable", "rate_limited", "server_error", "client_error", "bad_reply")


def attempt_outcome(error: ProviderError | None) -> str:
    """The ``outcome`` label of one upstream attempt that ended with ``error`` (None: success)."""
    if error is None:
        return "success"
    if isinstance(error, ProviderTimeout):
        return "timeout"
    status = error.upstream_status
    if status is None:
        return "unreachable"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "bad_reply"


def _use_multiprocess_values() -> None:
    """Make metrics created from now on write to the multiprocess directory.

    prometheus-client picks its value class when it is first imported; the router may have imported
    it before the runner set :data:`MULTIPROC_ENV`, so the choice is made again here.
    """
    if not getattr(prometheus_values.ValueClass, "_multiprocess", False):
        prometheus_values.ValueClass = prometheus_values.MultiProcessValue()


class Metrics:
    """The router's Prometheus metrics for one application.

    :param multiprocess_dir: the shared directory of ``--workers`` mode (see the module docs), or
        None for plain in-process metrics.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        target: CollectorRegistry | None = self.registry
        if multiprocess_dir:
            _use_multiprocess_values()
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            target = None  # values live in the files; the collector reads them back
        def new(cls: Any, name: str, **kwargs: Any) -> Any:
            spec = SPEC_BY_NAME[name]
            return cls(spec.name, spec.help, spec.labels, registry=target, **kwargs)

        self.requests = new(Counter, "llmrouter_requests_total")
        self.duration = new(Histogram, "llmrouter_request_duration_seconds", buckets=DURATION_BUCKETS)
        self.ttft = new(Histogram, "llmrouter_time_to_first_token_seconds", buckets=TTFT_BUCKETS)
        self.tokens = new(Counter, "llmrouter_tokens_total")
        self.cost = new(Counter, "llmrouter_cost_usd_total")
        self.attempts = new(Counter, "llmrouter_upstream_attempts_total")
        self.circuit_open = new(Gauge, "llmrouter_circuit_open", multiprocess_mode="livemax")
        self.in_flight = new(Gauge, "llmrouter_in_flight", multiprocess_mode="livesum")
        self._live = 0
        if not multiprocess_dir:
            # In one process the gauge is read when scraped, not updated twice per request.
            self.in_flight.set_function(lambda: self._live)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._rows: dict[tuple[str, str, str, str], _Row] = {}
        self._models: set[str] = set()

    # -- feeds ------------------------------------------------------------------------------------

    def started(self) -> None:
        """A request arrived."""
        self._live += 1
        if self.multiprocess_dir:
            self.in_flight.inc()

    def finished(self, entry: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        """A request ended: ``entry`` is its ``complete`` event, ``state`` its ``ctx.state`` (if any)."""
        self._live -= 1
        if self.multiprocess_dir:
            self.in_flight.dec()
        provider = entry.get("provider") or ""
        model = self._model(entry.get("sent_model") or "")
        key = (entry.get("endpoint") or "", provider, model, str(entry.get("status")))
        row = self._rows.get(key)
        if row is None:  # bounded: model labels are capped, the other labels are the router's own
            row = self._rows[key] = _Row(self, key)
        row.requests.inc()
        row.duration.observe(entry["duration_ms"] / 1000)
        if state is not None:
            ttft = state.get(TTFT_STATE)
            if ttft is not None:
                row.child(_TTFT, self.ttft, provider).observe(ttft)
        usage = entry.get("usage")
        if usage:
            if usage.get("input_tokens"):
                row.child(_INPUT, self.tokens, provider, model, "input").inc(usage["input_tokens"])
            if usage.get("output_tokens"):
                row.child(_OUTPUT, self.tokens, provider, model, "output").inc(usage["output_tokens"])
        cost = entry.get("cost_usd")
        if cost:
            row.child(_COST, self.cost, provider, model).inc(cost)

    def attempt(self, provider: str, error: ProviderError | None) -> None:
        """One upstream attempt ended (``error`` None on success)."""
        self._child(self.attempts, provider, attempt_outcome(error)).inc()

    def circuit(self, provider: str, model: str, is_open: bool) -> None:
        """A circuit breaker changed state (``model`` is empty for a breaker covering the whole provider)."""
        self._child(self.circuit_open, provider, model).set(1 if is_open else 0)

    # -- exposition ---------------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type, in the format ``accept`` asks for (text by default)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # -- internals ----------------------------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model(self, model: str) -> str:
        models = self._models
        if model in models:
            return model
        if len(models) >= MAX_MODEL_LABELS:
            return "other"
        models.add(model)
        return model


_TTFT, _INPUT, _OUTPUT, _COST = range(4)


class _Row:
    """The label children one kind of request (endpoint, provider, model, status) updates, looked up
    once per request instead of once per metric. Children a request may not touch (time to first
    token, tokens, cost) are created when first used, so a scrape shows the same series as before."""

    __slots__ = ("_lazy", "_metrics", "duration", "requests")

    def __init__(self, metrics: Metrics, key: tuple[str, str, str, str]) -> None:
        endpoint, provider, model, status = key
        self._metrics = metrics
        self.requests = metrics._child(metrics.requests, endpoint, provider, model, status)
        self.duration = metrics._child(metrics.duration, provider)
        self._lazy: list[Any] = [None, None, None, None]

    def child(self, slot: int, metric: Any, *labels: str) -> Any:
        """The child of ``metric`` for ``labels``, kept in ``slot``."""
        found = self._lazy[slot]
        if found is None:
            found = self._lazy[slot] = self._metrics._child(metric, *labels)
        return found


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, if one is set and exists."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def worker_exited(pid: int, path: str) -> None:
    """Drop a stopped worker's live gauges (in-flight requests, open circuits) from the shared directory."""
    mark_process_dead(pid, path)
