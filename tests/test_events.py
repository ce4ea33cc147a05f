"""The event bus (bounded queues, drop notices, history) and the events each kind of request publishes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from llmrouter import ChatResponse, Context, Flow, hookimpl
from llmrouter.jsonutil import loads
from llmrouter.observe.events import EventBus, JSONBytes, ParsedJSON, Subscription, SubscriptionClosed, now_ms
from llmrouter.testing import MockProviders, openai_chat
from llmrouter.web.app import BUS

ECHO = {
    "providers": [{"name": "echo", "format": "echo", "cost_per_1m_tokens": 1.0},
                  {"name": "echo-code", "format": "echo"}],
    "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "]}}},
    "routers": [{"type": "prefix", "model_prefix": "code/", "provider": "echo-code", "rewrite_model": "coder-1"},
                {"type": "fallback", "providers": ["echo"]}],
}


def drain(sub: Subscription) -> list[dict[str, Any]]:
    return sub.pending()


# -- the bus itself ----------------------------------------------------------------------------------


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(10), bus.subscribe(10)
    for i in range(5):
        bus.publish({"type": "start", "n": i})
    assert [e["n"] for e in drain(a)] == [0, 1, 2, 3, 4]
    assert [e["n"] for e in drain(b)] == [0, 1, 2, 3, 4]


async def test_slow_subscriber_loses_events_and_gets_a_notice_at_the_gap() -> None:
    bus = EventBus()
    slow, fast = bus.subscribe(4), bus.subscribe(1000)
    started = time.perf_counter()
    for i in range(500):
        bus.publish({"type": "start", "n": i})
    assert time.perf_counter() - started < 0.5  # publishing never waits for anyone
    assert len(drain(fast)) == 500
    received = [await slow.get() for _ in range(4)]
    assert [e["n"] for e in received] == [0, 1, 2, 3]
    notice = await slow.get()  # queue empty, drops pending: the notice comes now
    assert notice["type"] == "dropped" and notice["count"] == 496
    assert slow.dropped_total == 496
    bus.publish({"type": "start", "n": 500})
    assert (await slow.get())["n"] == 500


async def test_drop_notice_is_placed_before_the_next_event_that_fits() -> None:
    bus = EventBus()
    sub = bus.subscribe(3)
    for i in range(5):  # 0,1,2 queued; 3,4 dropped
        bus.publish({"type": "start", "n": i})
    assert (await sub.get())["n"] == 0
    assert (await sub.get())["n"] == 1  # now two free slots: notice + next event
    bus.publish({"type": "start", "n": 5})
    got = [await sub.get() for _ in range(3)]
    assert got[0]["n"] == 2
    assert got[1] == {"type": "dropped", "count": 2, "ts_ms": got[1]["ts_ms"]}
    assert got[2]["n"] == 5


async def test_close_wakes_a_waiting_reader_and_unsubscribes() -> None:
    bus = EventBus()
    sub = bus.subscribe(5)
    received: list[dict[str, Any]] = []

    async def read() -> None:
        async for event in sub:
            received.append(event)

    task = asyncio.create_task(read())
    bus.publish({"type": "start", "n": 1})
    await asyncio.sleep(0.01)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert received == [{"type": "start", "n": 1}]
    assert bus.subscriber_count == 0
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    bus.publish({"type": "start", "n": 2})  # no error publishing after a subscriber left


async def test_close_on_a_full_queue_still_wakes() -> None:
    bus = EventBus()
    sub = bus.subscribe(2)
    for i in range(3):
        bus.publish({"type": "x", "n": i})
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await sub.get()


async def test_history_keeps_only_recent_complete_events() -> None:
    bus = EventBus(history=3)
    for i in range(5):
        bus.publish({"type": "start", "id": str(i)})
        bus.publish({"type": "complete", "id": str(i)})
    assert [e["id"] for e in bus.recent(10)] == ["2", "3", "4"]
    assert [e["id"] for e in bus.recent(2)] == ["3", "4"]
    assert bus.recent(0) == []


async def test_history_keeps_a_client_body_as_bytes_and_gives_it_back_parsed() -> None:
    bus = EventBus(history=3)
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    event = {"type": "complete", "id": "1", "request": ParsedJSON(loads(raw), raw), "response": {"a": 1}}
    bus.publish(event)
    kept = bus.recent_compact(1)[0]
    # No parsed tree is held for the history: an agent's is hundreds of thousands of objects.
    assert isinstance(kept["request"], JSONBytes) and kept["request"].raw is raw
    assert kept["response"] == {"a": 1} and event["request"] == loads(raw)
    again = bus.recent(1)[0]
    assert isinstance(again["request"], ParsedJSON) and again["request"] == loads(raw) and again["request"].raw is raw
    assert {k: v for k, v in again.items() if k != "request"} == {k: v for k, v in event.items() if k != "request"}


async def test_a_subscription_for_some_types_is_not_offered_the_others() -> None:
    bus = EventBus()
    everything, completes = bus.subscribe(10), bus.subscribe(3).only("complete")
    for i in range(5):
        for kind in ("start", "classified", "routed", "complete"):
            bus.publish({"type": kind, "id": str(i)})
    assert len(everything.pending()) == 10 and everything.dropped == 10
    # Only the completes counted against its queue: three fit, the other two are the gap.
    assert [e["id"] for e in [await completes.get() for _ in range(3)]] == ["0", "1", "2"]
    assert (await completes.get()) == {"type": "dropped", "count": 2, "ts_ms": pytest.approx(now_ms(), abs=5000)}


async def test_poll_takes_what_is_queued_and_never_waits() -> None:
    bus = EventBus()
    sub = bus.subscribe(2)
    assert sub.poll() is None
    for i in range(4):
        bus.publish({"type": "start", "id": str(i)})
    assert [sub.poll()["id"], sub.poll()["id"]] == ["0", "1"]  # type: ignore[index]
    assert sub.poll()["type"] == "dropped"  # type: ignore[index]
    assert sub.poll() is None
    sub.close()
    with pytest.raises(SubscriptionClosed):
        sub.poll()


def test_subscription_needs_room_for_a_notice() -> None:
    with pytest.raises(ValueError):
        Subscription(EventBus(), 1)


# -- what requests publish ---------------------------------------------------------------------------


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_routed_request_publishes_start_classified_routed_complete(router: Any) -> None:
    client = await router(ECHO)
    reply = await client.openai(openai_chat("please def foo", model="code/x"))
    assert reply.status == 200
    events = reply.events
    assert types(events) == ["start", "classified", "routed", "complete"]
    start, classified, routed, complete = events
    assert start["id"] == reply.request_id
    assert start["model"] == "code/x"
    assert start["endpoint"] == "/v1/chat/completions"
    assert start["in_flight"] == 1
    assert isinstance(start["ts_ms"], int)
    assert classified["tags"] == ["code"]
    assert routed["provider"] == "echo-code" and routed["model"] == "coder-1"
    assert complete["provider"] == "echo-code"
    assert complete["requested_model"] == "code/x" and complete["sent_model"] == "coder-1"
    assert complete["tags"] == ["code"] and complete["error"] is None
    assert complete["ts_ms"] >= routed["ts_ms"] >= classified["ts_ms"] >= start["ts_ms"]
    assert complete == reply.log_line
    assert client.pipeline.in_flight == 0


async def test_streamed_request_publishes_the_same_sequence(router: Any) -> None:
    client = await router(ECHO)
    reply = await client.openai(openai_chat("hello there", model="m", stream=True))
    assert reply.status == 200
    assert types(reply.events) == ["start", "classified", "routed", "complete"]
    complete = reply.events[-1]
    assert complete["stream"] is True and complete["response"]["content"][0]["text"] == "hello there"
    assert complete["usage"]["output_tokens"] > 0


class Answering:
    """A plugin that answers in ``pre_request`` by itself."""

    @hookimpl
    def pre_request(self, ctx: Context) -> Flow:
        ctx.response = ChatResponse.from_text("canned")
        return Flow.STOP


async def test_request_answered_by_a_plugin_publishes_start_and_complete(router: Any) -> None:
    client = await router({**ECHO, "plugins": {"canned": {"enabled": True}}}, plugins={"canned": Answering()})
    reply = await client.openai(openai_chat("hi", model="m"))
    assert reply.status == 200
    assert types(reply.events) == ["start", "classified", "complete"]
    complete = reply.events[-1]
    assert complete["provider"] == "plugin" and complete["plugins"] == ["canned"]
    assert complete["error"] is None and complete["cost_usd"] == 0.0


@pytest.mark.parametrize(("body", "model"), [(b"{not json", None), ({"model": "gpt-x", "messages": 5}, "gpt-x")])
async def test_rejected_request_publishes_start_and_complete_with_error(router: Any, body: Any,
                                                                        model: str | None) -> None:
    client = await router(ECHO)
    reply = await client.openai(body)
    assert reply.status == 400
    events = reply.events
    assert types(events) == ["start", "complete"]
    assert events[0]["model"] == model
    assert events[1]["requested_model"] == model
    assert events[1]["status"] == 400 and events[1]["error"]
    assert events[1]["provider"] is None and events[1]["request"] is None
    assert client.pipeline.in_flight == 0


async def test_no_route_publishes_start_classified_complete(router: Any) -> None:
    cfg = {"providers": [{"name": "echo", "format": "echo"}],
           "routers": [{"type": "prefix", "model_prefix": "x/", "provider": "echo"}]}
    client = await router(cfg)
    reply = await client.openai(openai_chat("hi", model="other"))
    assert reply.status == 400
    assert types(reply.events) == ["start", "classified", "complete"]
    assert "no provider configured" in reply.events[-1]["error"]


async def test_upstream_failure_publishes_routed_and_complete_with_error(router: Any,
                                                                         mock_providers: MockProviders) -> None:
    mock_providers.add_openai("http://up.test/v1", status=500, body={"error": {"message": "boom"}})
    cfg = {"providers": [{"name": "up", "format": "openai", "base_url": "http://up.test/v1"}],
           "routers": [{"type": "fallback", "providers": ["up"]}], "routing": {"failover": False}}
    client = await router(cfg)
    reply = await client.openai(openai_chat("hi", model="m"))
    assert reply.status == 502
    assert types(reply.events) == ["start", "classified", "routed", "complete"]
    complete = reply.events[-1]
    assert complete["provider"] == "up" and "boom" in complete["error"] and complete["status"] == 502
    assert complete["response"] is None


class Holding:
    """Holds every request in ``pre_request`` until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @hookimpl
    async def pre_request(self, ctx: Context) -> None:
        await self.release.wait()


async def test_in_flight_counts_concurrent_requests(router: Any) -> None:
    hold = Holding()
    client = await router({**ECHO, "plugins": {"hold": {"enabled": True}}}, plugins={"hold": hold})
    tasks = [asyncio.create_task(client.openai(openai_chat(f"n{i}", model="m"))) for i in range(5)]
    for _ in range(200):
        if client.pipeline.in_flight == 5:
            break
        await asyncio.sleep(0.01)
    starts = [e for e in client.drain_events() if e["type"] == "start"]
    assert sorted(e["in_flight"] for e in starts) == [1, 2, 3, 4, 5]
    health = await (await client.client.get("/health")).json()
    assert health["in_flight"] == 5
    hold.release.set()
    replies = await asyncio.gather(*tasks)
    assert all(r.status == 200 for r in replies)
    assert client.pipeline.in_flight == 0


async def test_slow_subscriber_never_slows_requests(router: Any) -> None:
    client = await router(ECHO)
    slow = client.app[BUS].subscribe(2)
    replies = await asyncio.gather(*(client.openai(openai_chat(f"n{i}", model="m")) for i in range(30)))
    assert all(r.status == 200 for r in replies)
    got = drain(slow)
    assert len(got) == 2
    notice = await slow.get()
    assert notice["type"] == "dropped" and notice["count"] == 30 * 4 - 2


async def test_pending_returns_queued_events_without_waiting() -> None:
    from llmrouter.observe.events import EventBus

    bus = EventBus()
    subscription = bus.subscribe(10)
    assert subscription.pending() == []
    bus.publish({"type": "start", "id": "a"})
    bus.publish({"type": "complete", "id": "a"})
    assert [e["type"] for e in subscription.pending()] == ["start", "complete"]
    assert subscription.pending() == []
    subscription.close()
    assert subscription.pending() == []
