"""The cluster event bus: the local bus, plus every other worker's and instance's events through Redis.

:class:`ClusterEventBus` is an :class:`~llmrouter.observe.events.EventBus` (same subscriptions, same
drop-on-slow semantics) whose :meth:`~ClusterEventBus.publish` also queues the event for the
cluster. Events from other nodes arrive through the node's stream reader and are offered to the
local subscribers like local ones, so ``/dashboard/events``, ``watch`` and ``tui`` on any instance
see every request of the cluster. Local events are delivered locally at once, Redis or not.

Events travel in the cluster's events stream (see :mod:`llmrouter.cluster.node`): the node's writer
packs every event queued since its last round trip into one ``XADD``, in order, so per-request
order is kept and a node that was cut off catches up on what it missed. A node reads the stream
only while it has a subscriber (from the moment the first one subscribes), so nodes nobody watches
cost Redis no reads. The recent ``complete`` events a dashboard shows when it opens also go to a
capped list (``LPUSH`` + ``LTRIM`` in the same round trip), read once when a node joins.

A ``complete`` event whose JSON is larger than ``[cluster] event_body_limit_kb`` crosses the
cluster without its ``request`` and ``response`` bodies (``"bodies_omitted": true``): agent
requests of several hundred KB, copied to every watching instance, would make Redis's traffic
grow with the cluster times the number of dashboards. The instance that served the request still
delivers (and logs) it whole. While Redis is away or slow (more than ``SLIM_BACKLOG`` operations
waiting), ``complete`` events are queued without their bodies, so a node's outbox stays a few
megabytes however large the requests are.
"""

from __future__ import annotations

from typing import Any

from llmrouter.cluster.node import ClusterNode, Message
from llmrouter.jsonutil import loads
from llmrouter.observe.events import (
    DEFAULT_HISTORY,
    DEFAULT_QUEUE_SIZE,
    Event,
    EventBus,
    Subscription,
    now_ms,
)

KIND = "event"
SLIM_BACKLOG = 256
"""Outbox length beyond which ``complete`` events are queued without their bodies."""


def _slim(event: Event) -> Event:
    """A ``complete`` event without ``request`` and ``response``, marked ``bodies_omitted``."""
    if event.get("bodies_omitted"):
        return event
    slim = {k: v for k, v in event.items() if k not in ("request", "response")}
    slim["bodies_omitted"] = True
    return slim


class ClusterEventBus(EventBus):
    """An event bus whose events reach every node of the cluster."""

    def __init__(self, node: ClusterNode, history: int = DEFAULT_HISTORY) -> None:
        super().__init__(history)
        self.node = node
        self._history_key = node.key("history")
        self._history_size = node.config.history
        self._limit = int(node.config.event_body_limit_kb * 1024)
        self._share = node.config.share_events
        node.on(KIND, self._remote)
        if self._history_size:
            node.on_join(self._load_history)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` locally now and queue it for the other nodes (never blocks; the event is
        serialised later by the node's writer task, off the request's path)."""
        super().publish(event)
        if self._share:
            complete = event.get("type") == "complete"
            if complete and self.node.congested(SLIM_BACKLOG):
                # Redis is away or slow: what waits in the outbox must stay small, so bodies stay home.
                event = _slim(event)
            history = self._history_size and complete
            self.node.publish_later(lambda: self._encode(event), self._remember if history else None)

    def listening(self, kind: str) -> bool:
        """Shared events reach the other nodes whoever listens here."""
        return self._share or super().listening(kind)

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """A subscription that also gets every other node's events from now on."""
        if not self._subscribers:
            self.node.follow_events(now_ms())
        return super().subscribe(maxsize)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription; with none left the node stops reading other nodes' events."""
        super().unsubscribe(subscription)
        if not self._subscribers:
            self.node.follow_events(None)

    def _remember(self, data: bytes) -> list[tuple[str, tuple[object, ...]]]:
        return [("lpush", (self._history_key, data)), ("ltrim", (self._history_key, 0, self._history_size - 1))]

    def _encode(self, event: Event) -> bytes:
        data = self.node.message(KIND, {"event": event})
        if self._limit and len(data) > self._limit and event.get("type") == "complete":
            data = self.node.message(KIND, {"event": _slim(event)})
        return data

    def _remote(self, message: Message) -> None:
        event = message.get("event")
        if isinstance(event, dict):
            event.setdefault("node", message["node"])
            super().publish(event)

    async def _load_history(self, client: Any) -> None:
        """On joining, fill the local history with the cluster's recent ``complete`` events."""
        raw = await client.lrange(self._history_key, 0, self._history_size - 1)
        known = {e.get("id") for e in self._history}
        merged: list[Event] = []
        for item in reversed(raw):  # the list is newest first
            try:
                message = loads(item)
                event = message["event"]
            except (ValueError, KeyError, TypeError):
                continue
            if message.get("node") != self.node.node_id and event.get("id") not in known:
                event.setdefault("node", message.get("node"))
                merged.append(event)
        if merged:
            combined = sorted([*merged, *self._history], key=lambda e: e.get("ts_ms") or 0)
            self._history.clear()
            self._history.extend(combined)
