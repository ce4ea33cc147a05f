"""Subscriptions that take only some event types, and events nobody would receive not being built."""

from __future__ import annotations

import io
from typing import Any

from llmrouter.observe.accesslog import AccessLog
from llmrouter.observe.events import EventBus
from llmrouter.testing import openai_chat
from llmrouter.web.app import BUS

ECHO = {"providers": [{"name": "echo", "format": "echo"}],
        "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "]}}},
        "routers": [{"type": "fallback", "providers": ["echo"]}]}


async def test_a_subscription_with_types_gets_only_those() -> None:
    bus = EventBus()
    some, every = bus.subscribe(10).only("complete"), bus.subscribe(10)
    for kind in ("start", "classified", "routed", "complete"):
        bus.publish({"type": kind})
    assert [e["type"] for e in some.pending()] == ["complete"]
    assert [e["type"] for e in every.pending()] == ["start", "classified", "routed", "complete"]
    assert some.dropped_total == 0  # events of other types are not losses


async def test_listening_tells_whether_an_event_would_reach_anyone() -> None:
    bus = EventBus()
    assert bus.listening("complete")  # the history keeps it
    assert not bus.listening("start")
    assert not EventBus(history=0).listening("complete")
    some = bus.subscribe(10).only("routed")
    assert bus.listening("routed") and not bus.listening("start")
    every = bus.subscribe(10)
    assert bus.listening("start")
    every.close()
    some.close()
    assert not bus.listening("routed")


async def test_requests_build_only_the_events_someone_receives(router: Any, monkeypatch: Any) -> None:
    """With only the access log (complete events) listening, start/classified/routed are not built;
    once a subscriber takes everything they are published again, in order."""
    client = await router(ECHO)
    bus = client.app[BUS]
    published: list[str] = []
    publish = bus.publish

    def recording(event: dict[str, Any]) -> None:
        published.append(event["type"])
        publish(event)

    monkeypatch.setattr(bus, "publish", recording)
    client.subscription.close()  # the test client's own catch-all subscription
    out = io.StringIO()
    access = AccessLog(bus, out)
    access.start()
    reply = await client.openai(openai_chat("def x"))
    assert reply.status == 200
    assert published == ["complete"]
    everything = bus.subscribe(100)
    reply = await client.openai(openai_chat("def x"))
    assert published == ["complete", "start", "classified", "routed", "complete"]
    assert [e["type"] for e in everything.pending()] == ["start", "classified", "routed", "complete"]
    await access.stop()
    assert len(out.getvalue().splitlines()) == 2  # one access line per request either way
