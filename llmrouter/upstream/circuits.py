"""Circuit breakers keyed by provider and upstream model.

Each provider has a *connection* breaker (model :data:`ANY_MODEL`), which only connection-level
failures (refused, DNS, connect timeout) trip and which, open, blocks every model of that provider;
and one breaker per upstream model, tripped by that model's failures (5xx, 429, timeouts, broken
replies), which never blocks the provider's other models. Model breakers exist only while a model
is failing: one that closes with no failures left is dropped, so client-chosen model names cannot
grow the table without bound.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from llmrouter.errors import ProviderError
from llmrouter.observe.events import EventBackend, now_ms

if TYPE_CHECKING:
    from llmrouter.observe.metrics import Metrics

log = logging.getLogger("llmrouter.upstream.reliability")

ANY_MODEL = "*"
"""The model of a provider's connection breaker."""
_EMPTY: frozenset[str] = frozenset()


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
    """One breaker, for one provider and upstream model (``model`` is :data:`ANY_MODEL` for the
    provider's connection breaker). Not thread-safe; used from the event loop only."""

    __slots__ = ("name", "provider", "model", "threshold", "cooldown_s", "state", "failures", "opened_at",
                 "probing", "_clock", "_on_change")

    def __init__(self, name: str, threshold: int, cooldown_s: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[CircuitBreaker], None] | None = None,
                 model: str = ANY_MODEL) -> None:
        self.name = name
        self.provider = name
        self.model = model
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

    def adopt(self, state: CircuitState, retry_in_s: float, failures: int) -> bool:
        """Take the state another instance decided (shared breakers); True if anything changed.

        An ``open`` circuit opens here too, cooling down for the ``retry_in_s`` it had left there;
        ``closed`` closes it. A half-open circuit elsewhere says nothing here: each instance lets
        its own probe through when its cooldown ends.
        """
        if state is CircuitState.OPEN:
            self.failures = max(self.failures, failures)
            self.opened_at = self._clock() - max(0.0, self.cooldown_s - retry_in_s)
            self._set(CircuitState.OPEN, force=True)
            return True
        if state is CircuitState.CLOSED and self.state is not CircuitState.CLOSED:
            self.failures = 0
            self._set(CircuitState.CLOSED)
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until an open circuit admits a probe (0 when it would now)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self.opened_at))

    @property
    def key(self) -> str:
        """``provider/model``, as ``/health`` and ``circuit`` events show it."""
        return f"{self.provider}/{self.model}"

    def snapshot(self) -> dict[str, Any]:
        """State for ``/health``."""
        out: dict[str, Any] = {"key": self.key, "model": self.model, "state": str(self.state),
                               "consecutive_failures": self.failures}
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


class CircuitBoard:
    """Every breaker of the running router; publishes ``circuit`` events and keeps ``health``."""

    def __init__(self, providers: Iterable[str], threshold: int, cooldown_s: float, bus: EventBackend, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.bus = bus
        self._clock = clock
        self.health: dict[str, bool] = {}
        self.metrics: Metrics | None = None
        self.connections = {name: self._new(name, ANY_MODEL) for name in providers}
        self.models: dict[tuple[str, str], CircuitBreaker] = {}
        self._suspect: set[str] = set()  # providers whose connection breaker is not closed
        #: Set by the cluster: told of every local circuit change, so other instances adopt it.
        self.shared: Callable[[CircuitBreaker], None] | None = None
        self._adopting = False

    def _new(self, provider: str, model: str) -> CircuitBreaker:
        return CircuitBreaker(provider, self.threshold, self.cooldown_s, clock=self._clock,
                              on_change=self._changed, model=model)

    def reconfigure(self, providers: Iterable[str], threshold: int, cooldown_s: float) -> None:
        """A reloaded config: breakers for new providers; every breaker keeps its state and takes the
        new threshold and cooldown."""
        self.threshold, self.cooldown_s = threshold, cooldown_s
        for name in providers:
            if name not in self.connections:
                self.connections[name] = self._new(name, ANY_MODEL)
        for breaker in (*self.connections.values(), *self.models.values()):
            breaker.threshold, breaker.cooldown_s = threshold, cooldown_s

    def adopt(self, provider: str, model: str, state: str, retry_in_s: float, failures: int) -> None:
        """Apply a circuit change another instance decided, without publishing it again. Unknown
        providers are ignored; a model breaker is created to open, never to close."""
        if provider not in self.connections:
            return
        if model == ANY_MODEL:
            breaker: CircuitBreaker | None = self.connections[provider]
        elif state == CircuitState.OPEN:
            breaker = self.model_breaker(provider, model)
        else:
            breaker = self.models.get((provider, model))
        if breaker is None:
            return
        self._adopting = True
        try:
            breaker.adopt(CircuitState(state), retry_in_s, failures)
        finally:
            self._adopting = False
        if breaker.model != ANY_MODEL:
            self.settle(breaker)

    def model_breaker(self, provider: str, model: str) -> CircuitBreaker:
        """The breaker of ``provider``'s ``model``, created closed if there is none."""
        breaker = self.models.get((provider, model))
        if breaker is None:
            breaker = self.models[(provider, model)] = self._new(provider, model)
        return breaker

    def settle(self, breaker: CircuitBreaker | None) -> None:
        """Drop a model breaker that has nothing left to remember."""
        if breaker is not None and breaker.state is CircuitState.CLOSED and not breaker.failures \
                and not breaker.probing:
            self.models.pop((breaker.provider, breaker.model), None)

    def blocked(self) -> frozenset[str]:
        """Providers none of whose models can be tried now (their connection circuit is open)."""
        if not self._suspect:
            return _EMPTY
        return frozenset(name for name in self._suspect if not self.connections[name].ready())

    def model_blocked(self, provider: str, model: str) -> bool:
        """Whether ``provider``'s ``model`` cannot be tried now (its own circuit is open)."""
        breaker = self.models.get((provider, model)) if self.models else None
        return breaker is not None and not breaker.ready()

    def retry_in(self, provider: str, model: str) -> float:
        """Seconds until ``provider``'s ``model`` may be tried again."""
        waits = [self.connections[provider].retry_in()] if provider in self.connections else []
        breaker = self.models.get((provider, model))
        if breaker is not None:
            waits.append(breaker.retry_in())
        return max(waits, default=0.0)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per provider: its connection breaker's state plus ``models``, the breakers of failing models."""
        out = {name: {**breaker.snapshot(), "models": {}} for name, breaker in self.connections.items()}
        for (provider, model), breaker in self.models.items():
            if provider in out:
                out[provider]["models"][model] = breaker.snapshot()
        return out

    def _changed(self, breaker: CircuitBreaker) -> None:
        state = breaker.state
        if breaker.model == ANY_MODEL:
            if state is CircuitState.CLOSED:
                self._suspect.discard(breaker.provider)
            else:
                self._suspect.add(breaker.provider)
            self.health[breaker.provider] = state is CircuitState.CLOSED
        if self.metrics is not None:
            # The connection breaker covers the whole provider: its model label is empty.
            self.metrics.circuit(breaker.provider, "" if breaker.model == ANY_MODEL else breaker.model,
                                 state is not CircuitState.CLOSED)
        if self._adopting:  # decided elsewhere: that instance logged it and published the event
            log.info("circuit %s is now %s (shared by another instance)", breaker.key, state)
            return
        if self.shared is not None:
            self.shared(breaker)
        (log.info if state is CircuitState.CLOSED else log.warning)(
            "circuit %s is now %s (%d consecutive failures)", breaker.key, state, breaker.failures)
        self.bus.publish({"type": "circuit", "key": breaker.key, "provider": breaker.provider,
                          "model": breaker.model, "state": str(state),
                          "consecutive_failures": breaker.failures, "ts_ms": now_ms()})
