"""Subscriptions that take only some event types, events nobody would receive not being built, and
waiting for a subscription without taking an event (``wait``/``wake``)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from llmrouter.observe.accesslog import AccessLog
from llmrouter.observe.events import EventBus, SubscriptionClosed, now_ms
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


async def test_wait_returns_once_there_is_something_to_poll() -> None:
    bus = EventBus()
    sub = bus.subscribe(10)
    waiting = asyncio.create_task(sub.wait())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing queued: it waits
    bus.publish({"type": "start", "id": "a"})
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(sub.wait(), 1)  # an event is queued: at once
    assert sub.poll() == {"type": "start", "id": "a"}


async def test_wake_releases_a_wait_but_not_a_get() -> None:
    bus = EventBus()
    sub = bus.subscribe(10)
    waiting, getting = asyncio.create_task(sub.wait()), asyncio.create_task(sub.get())
    await asyncio.sleep(0.01)
    sub.wake()
    await asyncio.wait_for(waiting, 1)
    assert sub.poll() is None
    await asyncio.sleep(0.01)
    assert not getting.done()  # get() waits for an event, whatever wakes it
    bus.publish({"type": "start", "id": "b"})
    assert (await asyncio.wait_for(getting, 1))["id"] == "b"


async def test_close_releases_a_wait_and_poll_then_raises() -> None:
    bus = EventBus()
    sub = bus.subscribe(10)
    waiting = asyncio.create_task(sub.wait())
    await asyncio.sleep(0.01)
    sub.close()
    await asyncio.wait_for(waiting, 1)
    with pytest.raises(SubscriptionClosed):
        sub.poll()


async def test_a_drop_notice_due_ends_a_wait() -> None:
    bus = EventBus()
    sub = bus.subscribe(2)
    for i in range(3):
        bus.publish({"type": "start", "id": str(i)})
    assert [sub.poll()["id"], sub.poll()["id"]] == ["0", "1"]  # type: ignore[index]
    await asyncio.wait_for(sub.wait(), 1)
    assert sub.poll() == {"type": "dropped", "count": 1, "ts_ms": pytest.approx(now_ms(), abs=5000)}


async def test_readers_that_give_up_waiting_leave_nothing_behind() -> None:
    """A get() cancelled by a timeout, as a reader with a deadline does, many times over: the
    subscription keeps no stale waiter, and the next event still reaches the next reader."""
    bus = EventBus()
    sub = bus.subscribe(10)
    for _ in range(50):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.get(), 0.001)
    assert sub._waiters == []
    bus.publish({"type": "start", "id": "c"})
    assert (await asyncio.wait_for(sub.get(), 1))["id"] == "c"


async def test_listening_follows_subscribers_and_their_types() -> None:
    """The answer is remembered between changes: every change of the subscribers is seen."""
    bus = EventBus(history=0)
    assert not bus.listening("start") and not bus.listening("complete")
    sub = bus.subscribe(10)
    assert bus.listening("start") and bus.listening("complete")
    sub.only("complete")
    assert not bus.listening("start") and bus.listening("complete")
    sub.close()
    assert not bus.listening("complete")
