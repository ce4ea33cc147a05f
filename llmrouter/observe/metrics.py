"""Prometheus metrics: what ``GET /metrics`` serves.

One :class:`Metrics` per application, on its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide default, so two apps in one process never mix their numbers). It is fed
from the pipeline's completion path (:meth:`Metrics.finished`, called with the ``complete`` entry)
and from the reliability layer (:meth:`Metrics.attempt`, :meth:`Metrics.circuit`); each feed is a
handful of counter increments. In one process those are additions to plain attributes, applied to
the label children when the registry is collected (see :class:`_Row`).

With ``llmrouter serve --workers N`` the runner points ``PROMETHEUS_MULTIPROC_DIR`` at a
per-run directory before the workers fork; every worker then writes its values to memory-mapped
files there and a scrape answered by any worker merges all of them (prometheus-client's
multiprocess mode). Gauges count live workers only (``livesum``/``livemax``): the runner calls
:func:`worker_exited` for each worker that stops.
"""

from __future__ import annotations

import os
from bisect import bisect_left
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
        # In one process a request's updates are added up in plain attributes and applied to the
        # children when the registry is collected (a scrape): registered first, so it runs first.
        # Not with a prometheus-client that keeps its values where _Observations cannot add to them.
        self._defer = not multiprocess_dir and _Pending.usable(Histogram("probe", "", registry=None, buckets=(1.0,)))
        if self._defer:
            self.registry.register(_Flush(self))
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
        self._attempts: dict[tuple[str, str], _Total] = {}
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
        row.pending.add(entry["duration_ms"] / 1000)
        if state is not None:
            ttft = state.get(TTFT_STATE)
            if ttft is not None:
                row.lazy_histogram(_TTFT, self.ttft, provider).add(ttft)
        usage = entry.get("usage")
        if usage:
            tokens = usage.get("input_tokens")
            if tokens:
                row.lazy_total(_INPUT, self.tokens, provider, model, "input").add(tokens)
            tokens = usage.get("output_tokens")
            if tokens:
                row.lazy_total(_OUTPUT, self.tokens, provider, model, "output").add(tokens)
        cost = entry.get("cost_usd")
        if cost:
            row.lazy_total(_COST, self.cost, provider, model).add(cost)

    def attempt(self, provider: str, error: ProviderError | None) -> None:
        """One upstream attempt ended (``error`` None on success)."""
        key = (provider, attempt_outcome(error))
        total = self._attempts.get(key)
        if total is None:
            total = self._attempts[key] = _Total(self._child(self.attempts, *key), now=not self._defer)
        total.add(1)

    def flush(self) -> None:
        """Apply what requests added since the last flush to the label children (done by every
        collection of :attr:`registry`, so a scrape sees every request that ended before it)."""
        for row in self._rows.values():
            row.flush()
        for total in self._attempts.values():
            total.flush()

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
    token, tokens, cost) are created when first used, so a scrape shows the same series as before.

    In one process a request's updates are additions to plain attributes,
    applied to the children at the next collection: prometheus-client's ``inc`` and ``observe``
    take a lock and check their arguments on every call, which was most of what metrics cost a
    request. Counts are exact either way; a float total (seconds, cost) is added up in batches
    between scrapes, so its last digits may differ from a one-by-one sum. In ``--workers`` mode the
    same calls go straight to prometheus-client (:class:`_Now`, :class:`_Total` with ``now``)."""

    __slots__ = ("_lazy", "_metrics", "pending")

    def __init__(self, metrics: Metrics, key: tuple[str, str, str, str]) -> None:
        endpoint, provider, model, status = key
        self._metrics = metrics
        requests = metrics._child(metrics.requests, endpoint, provider, model, status)
        duration = metrics._child(metrics.duration, provider)
        self._lazy: list[Any] = [None, None, None, None]
        self.pending = _Pending(requests, duration) if metrics._defer else _Now(requests, duration)

    def lazy_total(self, slot: int, metric: Any, *labels: str) -> _Total:
        """The pending total of a counter child (created when first used), kept in ``slot``."""
        found = self._lazy[slot]
        if found is None:
            found = self._lazy[slot] = _Total(self._metrics._child(metric, *labels), now=not self._metrics._defer)
        return found  # type: ignore[no-any-return]

    def lazy_histogram(self, slot: int, metric: Any, *labels: str) -> _Observations | _Now:
        """The pending observations of a histogram child (created when first used), kept in ``slot``."""
        found = self._lazy[slot]
        if found is None:
            child = self._metrics._child(metric, *labels)
            found = self._lazy[slot] = _Observations(child) if self._metrics._defer else _Now(None, child)
        return found  # type: ignore[no-any-return]

    def flush(self) -> None:
        """Apply the pending updates (one process only)."""
        self.pending.flush()
        for found in self._lazy:
            if found is not None:
                found.flush()


class _Total:
    """Increments of one counter child, added up until :meth:`flush` (or, ``now``, applied at once)."""

    __slots__ = ("_child", "_now", "total")

    def __init__(self, child: Any, *, now: bool = False) -> None:
        self._child = child
        self._now = now
        self.total: float = 0

    def add(self, amount: float) -> None:
        """Count ``amount``; a negative one is refused at once, as ``Counter.inc`` refuses it."""
        if self._now or amount < 0:
            self._child.inc(amount)
            return
        self.total += amount

    def flush(self) -> None:
        """Apply the total to the child."""
        if self.total:
            total, self.total = self.total, 0
            self._child.inc(total)


class _Observations:
    """Observations of one histogram child: their sum and how many fell in each bucket."""

    __slots__ = ("_add_sum", "_bounds", "_buckets", "counts", "sum")

    def __init__(self, child: Any) -> None:
        self._add_sum = child._sum.inc
        self._bounds = tuple(child._upper_bounds)
        self._buckets = tuple(bucket.inc for bucket in child._buckets)
        self.sum = 0.0
        self.counts = [0] * len(self._bounds)

    def add(self, amount: float) -> None:
        """Observe ``amount``: in the first bucket whose upper bound is at least ``amount``."""
        self.sum += amount
        if amount <= self._bounds[-1]:  # (a NaN falls in no bucket, as in Histogram.observe)
            self.counts[bisect_left(self._bounds, amount)] += 1

    def flush(self) -> None:
        """Apply the sum and the bucket counts to the child."""
        counts = self.counts
        if not any(counts) and not self.sum:
            return
        total, self.sum = self.sum, 0.0
        self._add_sum(total)
        for index, count in enumerate(counts):
            if count:
                self._buckets[index](count)
                counts[index] = 0


class _Pending:
    """What one :class:`_Row` added since the last flush: requests and their durations."""

    __slots__ = ("_requests", "requests", "seconds")

    def __init__(self, requests: Any, duration: Any) -> None:
        self._requests = requests
        self.requests = 0
        self.seconds = _Observations(duration)

    @staticmethod
    def usable(histogram_child: Any) -> bool:
        """Whether this prometheus-client keeps a histogram child's values where
        :class:`_Observations` adds to them (the value objects behind ``observe``)."""
        try:
            values = (histogram_child._sum, *histogram_child._buckets)
            return len(histogram_child._buckets) == len(histogram_child._upper_bounds) and \
                all(callable(getattr(value, "inc", None)) for value in values)
        except (AttributeError, TypeError):
            return False

    def add(self, seconds: float) -> None:
        """One request that took ``seconds``."""
        self.requests += 1
        self.seconds.add(seconds)

    def flush(self) -> None:
        """Apply the pending request count and durations."""
        if self.requests:
            count, self.requests = self.requests, 0
            self._requests.inc(count)
        self.seconds.flush()


class _Now:
    """What :class:`_Pending` (with a request counter) or :class:`_Observations` (without) hold until
    a flush, applied at once instead: ``--workers`` mode, where another worker may serve the scrape."""

    __slots__ = ("_count", "_observe")

    def __init__(self, counter: Any | None, histogram: Any) -> None:
        self._count = counter.inc if counter is not None else None
        self._observe = histogram.observe

    def add(self, amount: float) -> None:
        """Count a request (with a counter) and observe ``amount``."""
        if self._count is not None:
            self._count()
        self._observe(amount)

    def flush(self) -> None:
        """Nothing is held."""


class _Flush:
    """A collector that yields nothing: registered first, it makes every collection of the
    registry apply the pending updates before the metrics are read."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        """No metrics of its own."""
        return []

    def collect(self) -> list[Any]:
        """Flush, and yield nothing."""
        self._metrics.flush()
        return []


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, if one is set and exists."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def worker_exited(pid: int, path: str) -> None:
    """Drop a stopped worker's live gauges (in-flight requests, open circuits) from the shared directory."""
    mark_process_dead(pid, path)
