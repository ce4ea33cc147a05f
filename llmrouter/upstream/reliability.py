"""Upstream fault handling: retries with backoff, per-provider circuit breakers, failover.

:class:`Reliability` wraps every provider call the pipeline makes (non-streaming replies, and
streams up to their first event, before anything has been sent to the client):

* **Retry** the same provider on connection errors (connect timeouts included), 429 and 5xx, at most
  ``max_retries`` times, waiting ``min(max_s, base_s * 2**n) * U(0.5, 1)`` before retry ``n``, or
  the upstream's ``Retry-After`` when that is longer (a ``Retry-After`` beyond
  ``max_retry_after_s`` is not waited for: the provider counts as failed). Never on other 4xx,
  never on a first-byte or total timeout (a slow provider would only be slow again).
* **Circuit breakers** per provider and upstream model (:mod:`llmrouter.upstream.circuits`):
  ``[routing] circuit_failures`` consecutive failed attempts open one; while open that model (or,
  for connection-level failures, the whole provider) is skipped; after ``circuit_cooldown_s`` one
  request probes it (``half_open``), whose success closes the circuit and whose failure re-opens
  it. A stream counts when it ends: one that breaks after its first byte is a failure.
* **Failover** (``[routing] failover = true``): once a provider has failed (after its retries),
  the router chain continues from the rule that chose it, without the providers already tried
  and those whose circuit is open.

Every attempt is recorded in ``ctx.state["attempts"]`` (copied into the log and the ``complete``
event); circuit changes are published as ``circuit`` events.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from llmrouter.config import Config
from llmrouter.errors import ProviderError, ProviderTimeout, RouterError
from llmrouter.models import ChatRequest, StreamError, StreamEvent
from llmrouter.observe.events import EventBackend, now_ms
from llmrouter.upstream.circuits import ANY_MODEL, CircuitBoard, CircuitBreaker, CircuitOpenError, Ticket
from llmrouter.upstream.circuits import CircuitState as CircuitState  # re-exported: it used to live here
from llmrouter.upstream.deadlines import deadline
from llmrouter.upstream.providers import Provider, ProviderConnectTimeout

if TYPE_CHECKING:
    from llmrouter.context import Context
    from llmrouter.engine.pipeline import Pipeline
    from llmrouter.observe.metrics import Metrics

log = logging.getLogger("llmrouter.upstream.reliability")

#: Upstream statuses that neither retry nor fail over: the request itself is at fault, so every
#: provider would refuse it the same way (the client gets the status). The exception is a prompt
#: too long for this model, which a provider with a larger context may take.
_CLIENT_FAULTS = frozenset({400, 404, 413, 422})
_CONTEXT_OVERFLOW = re.compile(r"context[ _]length|context window|maximum context|prompt is too long"
                               r"|too many (?:input )?tokens", re.IGNORECASE)
#: In-stream error types (Anthropic names) mapped to the HTTP status they stand for.
_NOT_A_FAULT = frozenset({400, 401, 403, 404, 413, 422})
_STREAM_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                        "not_found_error": 404, "rate_limit_error": 429, "overloaded_error": 529}


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


def is_context_overflow(error: ProviderError) -> bool:
    """True when the upstream refused the request as too long for the model's context."""
    return error.upstream_status in _CLIENT_FAULTS and bool(_CONTEXT_OVERFLOW.search(error.message))


def should_fail_over(error: ProviderError) -> bool:
    """True when another provider might answer where this one failed: anything but a request the
    client must fix (400/404/413/422), unless it only exceeded this model's context length."""
    return error.upstream_status not in _CLIENT_FAULTS or is_context_overflow(error)


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
        self.circuits = CircuitBoard(providers, routing.circuit_failures, routing.circuit_cooldown_s, bus,
                                     clock=clock)
        self.health = self.circuits.health
        if type(self).blocked is Reliability.blocked and type(self).model_blocked is Reliability.model_blocked:
            # Asked once per routed request (and per candidate): the board's own methods, one call
            # instead of two (the board is never replaced).
            self.blocked = self.circuits.blocked  # type: ignore[method-assign]
            self.model_blocked = self.circuits.model_blocked  # type: ignore[method-assign]

    def reconfigure(self, config: Config, providers: Mapping[str, Provider]) -> None:
        """Apply a reloaded config: routing settings, and breakers for new providers (existing
        breakers keep their state, with the new threshold and cooldown)."""
        routing = config.routing
        self.failover = routing.failover
        self.policy = RetryPolicy(base_s=routing.retry_backoff_base_s, max_s=routing.retry_backoff_max_s,
                                  max_retry_after_s=routing.max_retry_after_s)
        self.circuits.reconfigure(providers, routing.circuit_failures, routing.circuit_cooldown_s)

    @property
    def shared(self) -> Callable[[CircuitBreaker], None] | None:
        """Told of every local circuit change (set by the cluster, so other instances adopt it)."""
        return self.circuits.shared

    @shared.setter
    def shared(self, callback: Callable[[CircuitBreaker], None] | None) -> None:
        self.circuits.shared = callback

    def adopt(self, key: str, state: str, retry_in_s: float, failures: int, *, provider: str | None = None,
              model: str | None = None) -> None:
        """Apply a circuit change another instance published. ``key`` is the breaker's key there
        (opaque); ``provider`` and ``model`` say which breaker it is (without them, ``key`` is taken
        as a provider name: its connection breaker). Unknown providers are ignored."""
        self.circuits.adopt(provider or key, model or ANY_MODEL, state, retry_in_s, failures)

    @property
    def metrics(self) -> Metrics | None:
        """Where attempts and circuit changes are counted (set by the app when metrics are on)."""
        return self.circuits.metrics

    @metrics.setter
    def metrics(self, metrics: Metrics | None) -> None:
        self.circuits.metrics = metrics

    # -- the gate the pipeline consults while routing ----------------------------------------------

    def blocked(self) -> frozenset[str]:
        """Providers that cannot be tried now (connection circuit open, or its probe in flight)."""
        return self.circuits.blocked()

    def model_blocked(self, provider: str, model: str) -> bool:
        """Whether ``provider``'s ``model`` cannot be tried now (its own circuit is open)."""
        return self.circuits.model_blocked(provider, model)

    def unavailable(self, choices: list[tuple[str, str]]) -> RouterError:
        """The error for a request whose every routing choice (provider, model) had an open circuit."""
        wait = min((self.circuits.retry_in(p, m) for p, m in choices), default=0.0)
        return CircuitOpenError(list(dict.fromkeys(p for p, _ in choices)), wait)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every provider's circuit state, for ``/health``."""
        return self.circuits.snapshot()

    # -- calls ------------------------------------------------------------------------------------

    def complete(self, pipeline: Pipeline, ctx: Context) -> Awaitable[Any]:
        """``provider_call``: a non-streaming reply, with retries and failover (an awaitable: no
        coroutine of its own around :meth:`_run`)."""
        return self._run(pipeline, ctx, _complete)

    async def stream(self, pipeline: Pipeline, ctx: Context) -> AsyncIterator[StreamEvent]:
        """``stream_call``: a stream whose first event has arrived, with retries and failover before it."""
        result: AsyncIterator[StreamEvent] = await self._run(pipeline, ctx, open_primed_stream)
        return result

    async def _run(self, pipeline: Pipeline, ctx: Context, call: Call) -> Any:
        attempts: list[dict[str, Any]] = []
        ctx.state["attempts"] = attempts
        tried: list[str] = []
        circuits = self.circuits
        plain_attempt = type(self).attempt is Reliability.attempt  # (a subclass may wrap attempts)
        while True:
            name, model = ctx.provider, ctx.sent_model
            assert name is not None and model is not None
            tried.append(name)
            provider = pipeline.providers[name]
            connection = circuits.connections[name]
            max_retries = provider.config.max_retries
            error: ProviderError | None = None
            retry = 0
            while True:
                ticket = connection.acquire()
                breaker = circuits.models.get((name, model)) if circuits.models else None
                model_ticket = breaker.acquire() if breaker is not None else Ticket.NORMAL
                if ticket is None or model_ticket is None:
                    if ticket is not None:
                        connection.abandon(ticket)
                    error = error or CircuitOpenError([name], circuits.retry_in(name, model))
                    break
                started = time.perf_counter()
                try:
                    if plain_attempt:  # (attempt() inlined)
                        result = await call(provider, ctx.request, model, pipeline.http)  # type: ignore[arg-type]
                    else:
                        result = await self.attempt(call, provider, ctx, model, pipeline.http)  # type: ignore[arg-type]
                except ProviderError as exc:
                    error = exc
                    attempts.append(_attempt(name, model, exc.upstream_status, started, exc.message))
                    if self.metrics is not None:
                        self.metrics.attempt(name, exc)
                    if exc.connection:
                        connection.failure(ticket)
                        self._model_outcome(name, model, breaker, model_ticket, None)
                    else:
                        connection.success(ticket)
                        self._model_outcome(name, model, breaker, model_ticket, not is_provider_fault(exc))
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
                    connection.abandon(ticket)
                    self._model_outcome(name, model, breaker, model_ticket, None)
                    raise
                connection.success(ticket)
                attempts.append(_attempt(name, model, 200, started, None))
                if self.metrics is not None:
                    self.metrics.attempt(name, None)
                if isinstance(result, PrimedStream):
                    # A stream is judged when it ends: one that breaks after its first byte failed.
                    result.on_outcome = functools.partial(self._model_outcome, name, model, breaker, model_ticket)
                elif circuits.models or model_ticket is not Ticket.NORMAL:
                    # (an ordinary attempt's outcome goes to the model's breaker as it is now: none
                    # when no model has one, and then there is nothing to record)
                    self._model_outcome(name, model, breaker, model_ticket, True)
                return result
            if not (self.failover and should_fail_over(error)):
                raise error
            route = await pipeline.reroute(ctx, tried)
            if route is None:
                raise error
            ctx.provider, ctx.sent_model = route.provider, route.model or ctx.request.model
            log.info("request %s: provider %r failed (%s); failing over to %r", ctx.request_id, name,
                     error.message, ctx.provider)
            ctx.state.setdefault("failovers", []).append({"from": name, "to": ctx.provider, "error": error.message})
            self.bus.publish({"type": "routed", "id": ctx.request_id, "ts_ms": now_ms(), "provider": ctx.provider,
                              "model": ctx.sent_model, "failover_from": name})

    def attempt(self, call: Call, provider: Provider, ctx: Context, model: str,
                http: httpx.AsyncClient) -> Awaitable[Any]:
        """One upstream attempt (a tracing subclass wraps it in a span)."""
        return call(provider, ctx.request, model, http)

    def _model_outcome(self, provider: str, model: str, breaker: CircuitBreaker | None, ticket: Ticket,
                       ok: bool | None) -> None:
        """Record an attempt's outcome on the model's breaker: success, failure, or None (no outcome).

        ``breaker`` is the one the attempt started with; an ordinary attempt's outcome goes to the
        model's breaker as it is now (one may have been created, or dropped, while it ran), so that
        "consecutive" means consecutive in the order outcomes arrive.
        """
        if ticket is Ticket.NORMAL:
            breaker = self.circuits.models.get((provider, model)) if self.circuits.models else None
        if ok is False:
            breaker = breaker or self.circuits.model_breaker(provider, model)
            breaker.failure(ticket)
            return
        if breaker is None:
            return
        if ok:
            breaker.success(ticket)
        else:
            breaker.abandon(ticket)
        self.circuits.settle(breaker)


def _attempt(provider: str, model: str, status: int | None, started: float, error: str | None) -> dict[str, Any]:
    return {"provider": provider, "model": model, "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3), "error": error}


def _complete(provider: Provider, request: ChatRequest, model: str, http: httpx.AsyncClient) -> Awaitable[Any]:
    return provider.complete(request, model, http)


# -- streams: wait for the first event before committing to a provider -----------------------------------


class PrimedStream:
    """An upstream event stream whose first event has already been read.

    ``on_outcome`` (set by :class:`Reliability`) is told once how the stream ended: True when it
    ran to its end, False when it broke or carried an error event, None when it was closed early
    (the client left).
    """

    __slots__ = ("_first", "_rest", "on_outcome")

    def __init__(self, first: StreamEvent, rest: AsyncIterator[StreamEvent]) -> None:
        self._first: StreamEvent | None = first
        self._rest = rest
        self.on_outcome: Callable[[bool | None], None] | None = None

    def __aiter__(self) -> PrimedStream:
        return self

    async def __anext__(self) -> StreamEvent:
        first = self._first
        if first is not None:
            self._first = None
            return first
        try:
            event = await self._rest.__anext__()
        except StopAsyncIteration:
            self._report(True)
            raise
        except ProviderError as exc:
            self._report(not is_provider_fault(exc))
            raise
        except Exception:
            self._report(False)
            raise
        if type(event) is StreamError:
            self._report(_STREAM_ERROR_STATUS.get(event.error_type, 500) in _NOT_A_FAULT)
        return event

    def _report(self, ok: bool | None) -> None:
        report, self.on_outcome = self.on_outcome, None
        if report is not None:
            report(ok)

    async def aclose(self) -> None:
        """Close the upstream stream (a stream closed before its end has no outcome)."""
        self._report(None)
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
        with deadline(max(budget, 0.0)):
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
