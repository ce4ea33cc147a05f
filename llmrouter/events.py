"""The event bus: every request's ``start``, ``classified``, ``routed`` and ``complete`` events.

Publishing never blocks and never waits for subscribers: each subscriber has a bounded queue and a
subscriber that falls behind loses events, learning how many through a ``dropped`` event. The
:class:`EventBackend` interface lets a cross-process backend replace the in-memory one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]
DEFAULT_QUEUE_SIZE = 1000


def now_ms() -> int:
    """Wall-clock time in milliseconds, the ``ts_ms`` of events."""
    return int(time.time() * 1000)


class Subscription:
    """One subscriber's bounded queue. Iterate it to receive events; close it to unsubscribe."""

    def __init__(self, bus: EventBackend, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def offer(self, event: Event) -> None:
        """Queue ``event`` if there is room; otherwise count it as dropped."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> Event:
        """The next event; a ``dropped`` event first if any were lost since the last call."""
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return {"type": "dropped", "count": count, "ts_ms": now_ms()}
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving events."""
        if not self.closed:
            self.closed = True
            self._bus.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        try:
            while not self.closed:
                yield await self.get()
        finally:
            self.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBackend(Protocol):
    """What a bus backend provides: fire-and-forget publish and bounded subscriptions."""

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every current subscriber without blocking."""

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Start a subscription with a queue of ``maxsize`` events."""

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription."""


class EventBus:
    """The in-process event bus (the default backend)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []

    def publish(self, event: Event) -> None:
        """Deliver ``event`` (which must carry ``type``) to every subscriber, dropping on full queues."""
        for subscription in self._subscribers:
            subscription.offer(event)

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Start a subscription with a queue of ``maxsize`` events."""
        subscription = Subscription(self, maxsize)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)
