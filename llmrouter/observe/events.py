"""The event bus: every request's ``start``, ``classified``, ``routed`` and ``complete`` events.

Publishing never blocks and never waits for subscribers: each subscriber has a bounded queue, and a
subscriber that falls behind loses events. It learns how many through a ``dropped`` event
(``{"type": "dropped", "count": n, "ts_ms": ...}``) placed where the gap is, so it knows which part
of the stream is missing.

:class:`EventBackend` is the interface the pipeline and the dashboard use. :class:`EventBus` is the
in-process implementation. A cross-process backend (for ``--workers N``, or a broker) implements the
same three methods and delivers to its local subscribers with :meth:`Subscription.offer`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

Event = dict[str, Any]
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_HISTORY = 200


def now_ms() -> int:
    """Wall-clock time in milliseconds, the ``ts_ms`` of events."""
    return int(time.time() * 1000)


class ParsedJSON(dict[str, Any]):
    """A JSON object as parsed from ``raw``, its serialised bytes (e.g. a ``complete`` event's
    ``request``: the client's body). It is a plain ``dict`` to every reader and to orjson; a
    serialiser that knows it may copy ``raw`` instead of encoding an agent-sized object again
    (the dashboard's SSE frames do). Treat it as read-only, like the rest of an event."""

    __slots__ = ("raw",)

    def __init__(self, parsed: dict[str, Any], raw: bytes) -> None:
        super().__init__(parsed)
        self.raw = raw


class JSONBytes:
    """A JSON value kept only as ``raw``, its serialised bytes: the form in which the bus's history
    keeps a ``complete`` event's :class:`ParsedJSON` request. An agent's parsed request is hundreds
    of thousands of small objects; kept for the last 200 requests, they cost memory and, when the
    history finally lets go of one, a slow deallocation from cold memory on the request path."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def parsed(self) -> ParsedJSON:
        """The value parsed again."""
        return ParsedJSON(orjson.loads(self.raw), self.raw)


def _compact(event: Event) -> Event:
    request = event.get("request")
    return {**event, "request": JSONBytes(request.raw)} if isinstance(request, ParsedJSON) else event


def _expand(event: Event) -> Event:
    request = event.get("request")
    return {**event, "request": request.parsed()} if isinstance(request, JSONBytes) else event


class SubscriptionClosed(Exception):
    """Raised by :meth:`Subscription.get` once the subscription is closed."""


class Subscription:
    """One subscriber's bounded queue. Iterate it to receive events; close it to unsubscribe.

    ``dropped_total`` counts every event this subscriber lost since it subscribed.
    """

    def __init__(self, bus: EventBackend, maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        if maxsize < 2:
            raise ValueError("a subscription queue needs room for at least 2 events")
        self._bus = bus
        self._maxsize = maxsize
        # A deque and the futures of readers waiting for it, rather than an asyncio.Queue: offering an
        # event is the request path's cost, and the queue's put/get bookkeeping was most of it.
        self._events: deque[Event] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self.dropped = 0
        self.dropped_total = 0
        self.closed = False
        self.types: frozenset[str] | None = None

    def only(self, *types: str) -> Subscription:
        """Receive only events of these types from now on (plus ``dropped`` notices); returns self.

        Events of other types are not queued at all, so a subscriber that needs one kind of event
        costs the others nothing (no queueing, no wake-up of its task)."""
        self.types = frozenset(types)
        changed = getattr(self._bus, "subscribers_changed", None)
        if changed is not None:
            changed()
        return self

    def offer(self, event: Event) -> None:
        """Queue ``event`` if there is room, else count it as dropped. Never blocks."""
        if self.closed:
            return
        types = self.types
        if types is not None and event.get("type") not in types:
            return
        events = self._events
        if self.dropped:
            # The gap notice and the event must both fit, so the notice sits exactly at the gap.
            if len(events) + 2 > self._maxsize:
                self._drop()
                return
            events.append(self._notice())
        if len(events) >= self._maxsize:
            self._drop()
            return
        events.append(event)
        if self._waiters:
            self.wake()

    def _drop(self) -> None:
        self.dropped += 1
        self.dropped_total += 1

    def _notice(self) -> Event:
        count, self.dropped = self.dropped, 0
        return {"type": "dropped", "count": count, "ts_ms": now_ms()}

    async def get(self) -> Event:
        """The next event (possibly a ``dropped`` notice).

        :raises SubscriptionClosed: when the subscription is (or gets) closed.
        """
        while True:
            event = self.poll()
            if event is not None:
                return event
            await self._sleep()

    def poll(self) -> Event | None:
        """The next event if one is already queued (or a ``dropped`` notice is due), else None.
        Never waits: a reader that is behind takes what is queued without arming a timeout.

        :raises SubscriptionClosed: when the subscription is closed.
        """
        if self.closed:
            raise SubscriptionClosed
        if self._events:
            return self._events.popleft()
        return self._notice() if self.dropped else None

    async def wait(self) -> None:
        """Return once :meth:`poll` has something to give (an event, a ``dropped`` notice), the
        subscription is closed, or :meth:`wake` is called; at once if one of these holds already.

        For readers that also wait for something else (the dashboard's keep-alive): they call
        :meth:`wake` from a timer instead of arming a timeout around every wait."""
        if self.closed or self._events or self.dropped:
            return
        await self._sleep()

    def wake(self) -> None:
        """Let every pending :meth:`wait` return (a pending :meth:`get` goes on waiting for an event)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _sleep(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:  # e.g. a reader with a timeout: no stale futures pile up
                self._waiters.remove(waiter)
            raise

    def pending(self) -> list[Event]:
        """Every event queued right now, without waiting (for tests and tools)."""
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        """Stop receiving events; a pending :meth:`get` raises :class:`SubscriptionClosed`."""
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        self.wake()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        try:
            while True:
                try:
                    yield await self.get()
                except SubscriptionClosed:
                    return
        finally:
            self.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBackend(Protocol):
    """What a bus backend provides: fire-and-forget publish, bounded subscriptions, recent history."""

    def publish(self, event: Event) -> None:
        """Deliver ``event`` (a dict with ``type``) to every current subscriber without blocking."""

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Start a subscription with a queue of ``maxsize`` events."""

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (idempotent)."""

    def recent(self, limit: int) -> list[Event]:
        """Up to ``limit`` of the latest ``complete`` events, oldest first."""


class EventBus:
    """The in-process event bus (the default backend).

    It remembers the last ``history`` ``complete`` events so a dashboard that connects late can show
    recent traffic (a request kept as the client's bytes is remembered as :class:`JSONBytes`, see
    :meth:`recent` and :meth:`recent_compact`). Must be used from the event loop's thread.
    """

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        self._subscribers: list[Subscription] = []
        self._history: deque[Event] = deque(maxlen=max(0, history))
        self._listening: dict[str, bool] = {}

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber, dropping where a queue is full."""
        if self._history.maxlen and event.get("type") == "complete":
            self._history.append(_compact(event))
        for subscription in self._subscribers:
            subscription.offer(event)

    def listening(self, kind: str) -> bool:
        """Whether an event of type ``kind`` published now would reach anything: a subscriber that
        takes that type, or the history (``complete``). A publisher may skip building the others."""
        found = self._listening.get(kind)
        if found is None:  # asked several times per request: known until the subscribers change
            found = self._listening[kind] = (kind == "complete" and bool(self._history.maxlen)) or \
                any(s.types is None or kind in s.types for s in self._subscribers)
        return found

    def subscribers_changed(self) -> None:
        """A subscription came, went or changed the types it takes (:meth:`Subscription.only`)."""
        self._listening.clear()

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Start a subscription with a queue of ``maxsize`` events."""
        subscription = Subscription(self, maxsize)
        self._subscribers.append(subscription)
        self.subscribers_changed()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
            self.subscribers_changed()

    def recent(self, limit: int) -> list[Event]:
        """Up to ``limit`` of the latest ``complete`` events, oldest first."""
        return [_expand(event) for event in self.recent_compact(limit)]

    def recent_compact(self, limit: int) -> list[Event]:
        """Like :meth:`recent`, but a request kept as the client's bytes comes as :class:`JSONBytes`
        (not parsed again: for serialisers that copy the bytes, like the dashboard's)."""
        if limit <= 0:
            return []
        return list(self._history)[-limit:]

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)
