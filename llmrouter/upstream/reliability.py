"""Upstream fault handling: retries with backoff, per-provider circuit breakers, failover.

:class:`Reliability` wraps every provider call the pipeline makes (non-streaming replies, and
streams up to their first event, before anything has been sent to the client):

* **Retry** the same provider on connect errors (connect timeouts included), 429 and 5xx, at most
  ``max_retries`` times, waiting ``min(max_s, base_s * 2**n) * U(0.5, 1)`` before retry ``n``, or
  the upstream's ``Retry-After`` when that is longer (a ``Retry-After`` beyond
  ``max_retry_after_s`` is not waited for: the provider counts as failed). Never on other 4xx,
  never on a first-byte or total timeout (a slow provider would only be slow again).
* **Circuit breaker** per provider: ``[routing] circuit_failures`` consecutive failed attempts
  open it; while open the provider is skipped; after ``circuit_cooldown_s`` one request probes it
  (``half_open``), whose success closes the circuit and whose failure re-opens it.
* **Failover** (``[routing] failover = true``): once a provider has failed (after its retries),
  the router chain continues from the rule that chose it, without the providers already tried
  and those whose circuit is open.

Every attempt is recorded in ``ctx.state["attempts"]`` (copied into the log and the ``complete``
event); circuit changes are published as ``circuit`` events.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from llmrouter.config import Config
from llmrouter.errors import ProviderError, ProviderTimeout, RouterError
from llmrouter.models import ChatRequest, StreamError, StreamEvent
from llmrouter.observe.events import EventBackend, now_ms
from llmrouter.upstream.providers import Provider, ProviderConnectTimeout

if TYPE_CHECKING:
    from llmrouter.context import Context
    from llmrouter.engine.pipeline import Pipeline
    from llmrouter.observe.metrics import Metrics

log = logging.getLogger("llmrouter.upstream.reliability")

#: Upstream statuses that do not fail over: the request itself is at fault, so every provider
#: would refuse it the same way. 401/403/404/408 (a misconfigured key or model, a slow upstream)
#: do fail over.
_FAILOVER_4XX = frozenset({401, 403, 404, 408, 429})
#: In-stream error types (Anthropic names) mapped to the HTTP status they stand for.
_STREAM_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                        "not_found_error": 404, "rate_limit_error": 429, "overloaded_error": 529}
_EMPTY: frozenset[str] = frozenset()


# -- classification ---------------------------------------------------------------------------------


def is_retryable(error: ProviderError) -> bool:
    """True for faults worth repeating on the same provider: connect errors, 429 and 5xx."""
    if isinstance(error, ProviderTimeout):
        return isinstance(error, ProviderConnectTimeout)
    status = error.upstream_status
    return status is None or status == 429 or status >= 500


def is_provider_fault(error: ProviderError) -> bool:
    """True when the provider (not the request) failed; these count towards its circuit breaker."""
    status = error.upstream_status
    return status is None or status == 429 or status >= 500 or status < 400


def should_fail_over(error: ProviderError) -> bool:
    """True when another provider might answer where this one failed."""
    return is_provider_fault(error) or error.upstream_status in _FAILOVER_4XX


# -- backoff ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry ``n`` (0-based) waits
    ``min(max_s, base_s * 2**n) * U(0.5, 1)``, or the upstream's ``Retry-After`` if that is longer."""

    base_s: float = 0.5
    max_s: float = 8.0
    max_retry_after_s: float = 30.0

    def delay(self, retry: int, retry_after: float | None, rand: float) -> float | None:
        """Seconds to wait before retry ``retry`` given a uniform ``rand`` in [0, 1); None = give up."""
        backoff = min(self.max_s, self.base_s * (2 ** retry)) * (0.5 + rand / 2)
        if retry_after is None:
            return backoff
        if retry_after > self.max_retry_after_s:
            return None
        return max(retry_after, backoff)


# -- circuit breaker --------------------------------------------------------------------------------


class CircuitState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Ticket(enum.Enum):
    """What :meth:`CircuitBreaker.acquire` granted: an ordinary attempt or the half-open probe."""

    NORMAL = "normal"
    PROBE = "probe"


class CircuitBreaker:
    """One provider's breaker. Not thread-safe; used from the event loop only."""

    __slots__ = ("name", "threshold", "cooldown_s", "state", "failures", "opened_at", "probing", "_clock",
                 "_on_change")

    def __init__(self, name: str, threshold: int, cooldown_s: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[CircuitBreaker], None] | None = None) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False
        self._clock = clock
        self._on_change = on_change

    def ready(self) -> bool:
        """Whether :meth:`acquire` would grant an attempt now (does not change state)."""
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            return self._clock() - self.opened_at >= self.cooldown_s
        return not self.probing

    def acquire(self) -> Ticket | None:
        """Permission for one attempt: NORMAL when closed, PROBE for the single half-open probe."""
        if self.state is CircuitState.CLOSED:
            return Ticket.NORMAL
        if not self.ready():
            return None
        if self.state is CircuitState.OPEN:
            self._set(CircuitState.HALF_OPEN)
        self.probing = True
        return Ticket.PROBE

    def success(self, ticket: Ticket) -> None:
        """The attempt got an answer from the provider."""
        if ticket is Ticket.PROBE:
            self.probing = False
            self.failures = 0
            self._set(CircuitState.CLOSED)
        elif self.state is CircuitState.CLOSED:
            self.failures = 0

    def failure(self, ticket: Ticket) -> None:
        """The attempt failed through the provider's fault."""
        if ticket is Ticket.PROBE:
            self.probing = False
            self.failures += 1
            self._open()
        elif self.state is CircuitState.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open()
        # Outcomes of attempts started before the circuit opened say nothing new: ignored.

    def abandon(self, ticket: Ticket) -> None:
        """The attempt ended without an outcome (cancelled): free the probe slot if it held it."""
        if ticket is Ticket.PROBE:
            self.probing = False

    def retry_in(self) -> float:
        """Seconds until an open circuit admits a probe (0 when it would now)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self.opened_at))

    def snapshot(self) -> dict[str, Any]:
        """State for ``/health``."""
        out: dict[str, Any] = {"state": str(self.state), "consecutive_failures": self.failures}
        if self.state is CircuitState.OPEN:
            out["retry_in_s"] = round(self.retry_in(), 3)
        return out

    def _open(self) -> None:
        self.opened_at = self._clock()
        self._set(CircuitState.OPEN, force=True)

    def _set(self, state: CircuitState, force: bool = False) -> None:
        if state is self.state and not force:
            return
        changed = state is not self.state
        self.state = state
        if changed and self._on_change is not None:
            self._on_change(self)


class CircuitOpenError(ProviderError):
    """Every provider the router chain chose has an open circuit (503)."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, providers: list[str], retry_after: float) -> None:
        names = ", ".join(f"'{name}'" for name in providers)
        plural = "s" if len(providers) > 1 else ""
        super().__init__(providers[0], f"provider{plural} {names} unavailable: circuit open after repeated "
                                       f"failures; retry in {retry_after:.1f} s", retry_after=retry_after)
        self.code = "circuit_open"


# -- the wrapper ------------------------------------------------------------------------------------


Call = Callable[[Provider, ChatRequest, str, httpx.AsyncClient], Awaitable[Any]]


class Reliability:
    """Retries, circuit breakers and failover around the pipeline's provider calls.

    Pass :meth:`complete` and :meth:`stream` to :class:`~llmrouter.engine.pipeline.Pipeline` as
    ``provider_call``/``stream_call`` and the instance itself as ``gate``.
    """

    def __init__(self, config: Config, providers: Mapping[str, Provider], bus: EventBackend, *,
                 policy: RetryPolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.failover = config.routing.failover
        self.bus = bus
        routing = config.routing
        self.policy = policy or RetryPolicy(base_s=routing.retry_backoff_base_s, max_s=routing.retry_backoff_max_s,
                                            max_retry_after_s=routing.max_retry_after_s)
        self.rand = rand
        self.sleep = sleep
        self.health: dict[str, bool] = {}
        self._suspect: set[str] = set()  # names whose circuit is not closed
        self.metrics: Metrics | None = None
        self.breakers = {name: CircuitBreaker(name, config.routing.circuit_failures, config.routing.circuit_cooldown_s,
                                              clock=clock, on_change=self._changed)
                         for name in providers}

    # -- the gate the pipeline consults while routing ----------------------------------------------

    def blocked(self) -> frozenset[str]:
        """Providers that cannot be tried now (open circuit cooling down, or a probe in flight)."""
        if not self._suspect:
            return _EMPTY
        return frozenset(name for name in self._suspect if not self.breakers[name].ready())

    def unavailable(self, providers: list[str]) -> RouterError:
        """The error for a request whose every routing choice had an open circuit."""
        wait = min((self.breakers[name].retry_in() for name in providers if name in self.breakers), default=0.0)
        return CircuitOpenError(providers, wait)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every provider's circuit state, for ``/health``."""
        return {name: breaker.snapshot() for name, breaker in self.breakers.items()}

    def _changed(self, breaker: CircuitBreaker) -> None:
        state = breaker.state
        if state is CircuitState.CLOSED:
            self._suspect.discard(breaker.name)
        else:
            self._suspect.add(breaker.name)
        self.health[breaker.name] = state is CircuitState.CLOSED
        (log.info if state is CircuitState.CLOSED else log.warning)(
            "circuit for provider %r is now %s (%d consecutive failures)", breaker.name, state, breaker.failures)
        if self.metrics is not None:
            # Breakers covering a whole provider have no model; per-model breakers carry one.
            self.metrics.circuit(breaker.name, getattr(breaker, "model", None) or "", state is not CircuitState.CLOSED)
        self.bus.publish({"type": "circuit", "provider": breaker.name, "state": str(state),
                          "consecutive_failures": breaker.failures, "ts_ms": now_ms()})

    # -- calls ------------------------------------------------------------------------------------

    async def complete(self, pipeline: Pipeline, ctx: Context) -> Any:
        """``provider_call``: a non-streaming reply, with retries and failover."""
        return await self._run(pipeline, ctx, _complete)

    async def stream(self, pipeline: Pipeline, ctx: Context) -> AsyncIterator[StreamEvent]:
        """``stream_call``: a stream whose first event has arrived, with retries and failover before it."""
        result: AsyncIterator[StreamEvent] = await self._run(pipeline, ctx, open_primed_stream)
        return result

    async def _run(self, pipeline: Pipeline, ctx: Context, call: Call) -> Any:
        attempts: list[dict[str, Any]] = []
        ctx.state["attempts"] = attempts
        tried: list[str] = []
        while True:
            name, model = ctx.provider, ctx.sent_model
            assert name is not None and model is not None
            tried.append(name)
            provider = pipeline.providers[name]
            breaker = self.breakers[name]
            max_retries = provider.config.max_retries
            error: ProviderError | None = None
            retry = 0
            while True:
                ticket = breaker.acquire()
                if ticket is None:
                    error = error or CircuitOpenError([name], breaker.retry_in())
                    break
                started = time.perf_counter()
                try:
                    result = await self.attempt(call, provider, ctx, model, pipeline.http)  # type: ignore[arg-type]
                except ProviderError as exc:
                    error = exc
                    attempts.append(_attempt(name, model, exc.upstream_status, started, exc.message))
                    if self.metrics is not None:
                        self.metrics.attempt(name, exc)
                    if is_provider_fault(exc):
                        breaker.failure(ticket)
                    else:
                        breaker.success(ticket)
                    if retry >= max_retries or not is_retryable(exc):
                        break
                    delay = self.policy.delay(retry, exc.retry_after, self.rand())
                    if delay is None:
                        break
                    attempts[-1]["retry_in_ms"] = round(delay * 1000, 1)
                    retry += 1
                    await self.sleep(delay)
                    continue
                except BaseException:
                    breaker.abandon(ticket)
                    raise
                breaker.success(ticket)
                attempts.append(_attempt(name, model, 200, started, None))
                if self.metrics is not None:
                    self.metrics.attempt(name, None)
                return result
            if not (self.failover and should_fail_over(error)):
                raise error
            route = await pipeline.reroute(ctx, tried)
            if route is None:
                raise error
            ctx.provider, ctx.sent_model = route.provider, route.model or ctx.request.model
            log.info("request %s: provider %r failed (%s); failing over to %r", ctx.request_id, name,
                     error.message, ctx.provider)
            self.bus.publish({"type": "routed", "id": ctx.request_id, "ts_ms": now_ms(), "provider": ctx.provider,
                              "model": ctx.sent_model, "failover_from": name})

    def attempt(self, call: Call, provider: Provider, ctx: Context, model: str,
                http: httpx.AsyncClient) -> Awaitable[Any]:
        """One upstream attempt (a tracing subclass wraps it in a span)."""
        return call(provider, ctx.request, model, http)


def _attempt(provider: str, model: str, status: int | None, started: float, error: str | None) -> dict[str, Any]:
    return {"provider": provider, "model": model, "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3), "error": error}


async def _complete(provider: Provider, request: ChatRequest, model: str, http: httpx.AsyncClient) -> Any:
    return await provider.complete(request, model, http)


# -- streams: wait for the first event before committing to a provider -----------------------------------


class PrimedStream:
    """An upstream event stream whose first event has already been read."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: StreamEvent, rest: AsyncIterator[StreamEvent]) -> None:
        self._first: StreamEvent | None = first
        self._rest = rest

    def __aiter__(self) -> PrimedStream:
        return self

    async def __anext__(self) -> StreamEvent:
        first = self._first
        if first is not None:
            self._first = None
            return first
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        """Close the upstream stream."""
        await _aclose(self._rest)


async def open_primed_stream(provider: Provider, request: ChatRequest, model: str,
                             http: httpx.AsyncClient) -> PrimedStream:
    """Open ``provider``'s stream and read its first event within ``timeout_first_byte_s``.

    Until that event has arrived nothing has been sent to the client, so any failure here (including
    an error event in place of the first event) is raised and may be retried or failed over.
    """
    started = time.perf_counter()
    events = await provider.stream(request, model, http)
    iterator = events.__aiter__()
    budget = provider.config.timeout_first_byte_s - (time.perf_counter() - started)
    try:
        async with asyncio.timeout(max(budget, 0.0)):
            first = await iterator.__anext__()
    except StopAsyncIteration:
        raise ProviderError(provider.name, f"provider '{provider.name}' ended the stream without any event",
                            upstream_status=200) from None
    except TimeoutError:
        await _aclose(iterator)
        raise ProviderTimeout(provider.name, f"provider '{provider.name}' timed out: no first event within "
                                             f"{provider.config.timeout_first_byte_s:g} s") from None
    except BaseException:
        await _aclose(iterator)
        raise
    if isinstance(first, StreamError):
        await _aclose(iterator)
        raise ProviderError(provider.name, f"provider '{provider.name}' stream error: {first.message}",
                            upstream_status=_STREAM_ERROR_STATUS.get(first.error_type, 500))
    return PrimedStream(first, iterator)


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # a broken upstream must not mask the real outcome
            log.debug("error closing upstream stream", exc_info=True)
