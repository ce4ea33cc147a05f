"""``/dashboard`` and ``/dashboard/events``: SSE framing, keep-alives, cleanup, history, auth, disabling."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from llmrouter.jsonutil import loads
from llmrouter.observe.events import JSONBytes, ParsedJSON
from llmrouter.testing import openai_chat
from llmrouter.web import dashboard
from llmrouter.web.app import BUS

ECHO = {"providers": [{"name": "echo", "format": "echo"}],
        "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "]}}},
        "routers": [{"type": "fallback", "providers": ["echo"]}]}


async def read_frame(resp: Any, timeout: float = 2.0) -> tuple[str | None, dict[str, Any] | None, list[str]]:
    """Read one SSE frame: (event type, parsed data, comment lines)."""
    kind: str | None = None
    data: dict[str, Any] | None = None
    comments: list[str] = []
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), timeout)
        assert raw, "stream ended"
        line = raw.decode().rstrip("\n")
        if not line:
            if kind or data or comments:
                return kind, data, comments
            continue
        if line.startswith(":"):
            comments.append(line[1:].strip())
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = loads(line[6:])


async def next_event(resp: Any) -> tuple[str, dict[str, Any]]:
    while True:
        kind, data, _ = await read_frame(resp)
        if kind is not None:
            assert data is not None
            return kind, data


async def open_events(client: Any, query: str = "") -> Any:
    resp = await client.client.get("/dashboard/events" + query)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    _, _, comments = await read_frame(resp)  # the greeting
    assert "connected" in comments
    return resp


async def test_page_is_self_contained_html(router: Any) -> None:
    client = await router(ECHO)
    resp = await client.client.get("/dashboard")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    html = await resp.text()
    assert "<script" in html and "EventSource" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external assets"
    assert not re.search(r"@import|https?://", html)
    assert "api_key" in html  # the key is passed on to the event stream


async def test_events_stream_as_sse_in_order(router: Any) -> None:
    client = await router(ECHO)
    resp = await open_events(client)
    reply = await client.openai(openai_chat("def f(): pass", model="m"))
    got = [await next_event(resp) for _ in range(4)]
    assert [kind for kind, _ in got] == ["start", "classified", "routed", "complete"]
    for kind, data in got:
        assert data["type"] == kind and data["id"] == reply.request_id
    assert got[1][1]["tags"] == ["code"]
    assert got[3][1]["provider"] == "echo" and got[3][1]["response"]["content"][0]["text"] == "def f(): pass"
    resp.close()


async def test_keep_alive_comments_are_sent(router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "SSE_KEEPALIVE_S", 0.05)
    client = await router(ECHO)
    resp = await open_events(client)
    kind, _, comments = await read_frame(resp)
    assert kind is None and comments == ["keep-alive"]
    resp.close()


async def test_keep_alives_come_only_after_a_silence_and_repeat(router: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Events arriving more often than the keep-alive period hold it off; once they stop, a
    keep-alive comes after each silence of that length."""
    monkeypatch.setattr(dashboard, "SSE_KEEPALIVE_S", 0.4)
    client = await router(ECHO)
    bus = client.app[BUS]
    resp = await open_events(client)
    for i in range(12):  # 0.6 s of events, 0.05 s apart
        bus.publish({"type": "circuit", "n": i})
        kind, data, comments = await read_frame(resp)
        assert (kind, comments) == ("circuit", []) and data is not None and data["n"] == i
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    quiet = loop.time()
    for _ in range(2):
        kind, _, comments = await read_frame(resp, timeout=3.0)
        assert kind is None and comments == ["keep-alive"]
    assert loop.time() - quiet >= 0.7  # two silences of 0.4 s (less the timer's slack)
    resp.close()


async def test_subscription_is_removed_when_the_client_goes_away(router: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "SSE_KEEPALIVE_S", 0.05)
    client = await router(ECHO)
    bus = client.app[BUS]
    base = bus.subscriber_count  # the test client's own subscription
    resp = await open_events(client)
    assert bus.subscriber_count == base + 1
    resp.close()
    for _ in range(100):
        if bus.subscriber_count == base:
            break
        await asyncio.sleep(0.02)
    assert bus.subscriber_count == base
    assert (await client.openai(openai_chat("still fine"))).status == 200


async def test_history_replays_recent_completions_first(router: Any) -> None:
    client = await router(ECHO)
    ids = [(await client.openai(openai_chat(f"n{i}"))).request_id for i in range(3)]
    resp = await open_events(client, "?history=2")
    replayed = [await next_event(resp) for _ in range(2)]
    assert [(k, d["id"]) for k, d in replayed] == [("complete", ids[1]), ("complete", ids[2])]
    # Every request comes back in full (the history keeps the client's bytes, not a parsed copy).
    assert [d["request"] for _, d in replayed] == [openai_chat("n1"), openai_chat("n2")]
    assert replayed[1][1]["request_format"] == "openai"
    live = await client.openai(openai_chat("live"))
    assert (await next_event(resp)) [1]["id"] == live.request_id
    resp.close()
    bad = await client.client.get("/dashboard/events?history=lots")
    assert bad.status == 400


async def test_slow_sse_client_gets_a_dropped_event(router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "SUBSCRIBER_QUEUE", 4)
    client = await router(ECHO)
    bus = client.app[BUS]
    resp = await open_events(client)
    for i in range(50):  # published synchronously: the handler cannot keep up
        bus.publish({"type": "start", "id": str(i)})
    got = [await next_event(resp) for _ in range(5)]
    assert [d["id"] for _, d in got[:4]] == ["0", "1", "2", "3"]
    assert got[4][0] == "dropped" and got[4][1]["count"] == 46
    resp.close()


async def test_dashboard_false_removes_both_routes(router: Any) -> None:
    client = await router({**ECHO, "server": {"dashboard": False}})
    assert (await client.client.get("/dashboard")).status == 404
    assert (await client.client.get("/dashboard/events")).status == 404
    assert (await client.openai(openai_chat("hi"))).status == 200


async def test_works_behind_inbound_auth_with_query_key(router: Any) -> None:
    client = await router({**ECHO, "server": {"api_key_env": "ROUTER_API_KEY"}}, environ={"ROUTER_API_KEY": "s3cret"})
    assert (await client.client.get("/dashboard")).status == 401
    assert (await client.client.get("/dashboard/events")).status == 401
    assert (await client.client.get("/dashboard/events?api_key=wrong")).status == 401
    assert (await client.client.get("/dashboard?api_key=s3cret")).status == 200
    resp = await open_events(client, "?api_key=s3cret")
    reply = await client.openai(openai_chat("hi"), {"Authorization": "Bearer s3cret"})
    assert reply.status == 200
    kind, data = await next_event(resp)
    assert kind == "start" and data["id"] == reply.request_id
    resp.close()


async def test_shutdown_ends_open_streams(aiohttp_client: Any) -> None:
    from llmrouter.testing import make_config
    from llmrouter.web.app import create_app

    app = create_app(make_config(ECHO), environ={})
    client = await aiohttp_client(app)
    resp = await client.get("/dashboard/events")
    await read_frame(resp)
    await asyncio.wait_for(app.shutdown(), 2)
    rest = await asyncio.wait_for(resp.content.read(), 2)  # the server ends the stream by itself
    assert b"event:" not in rest
    assert app[BUS].subscriber_count == 0


async def complete_data_line(resp: Any) -> bytes:
    """The raw ``data:`` line of the next ``complete`` frame."""
    for _ in range(50):
        line = await asyncio.wait_for(resp.content.readline(), 2.0)
        assert line, "stream ended"
        if line == b"event: complete\n":
            data = await asyncio.wait_for(resp.content.readline(), 2.0)
            assert data.startswith(b"data: ") and data.endswith(b"\n")
            return data[6:-1]
    raise AssertionError("no complete event")


async def test_complete_frame_carries_the_clients_bytes_once_for_every_subscriber(router: Any) -> None:
    client = await router(ECHO)
    first, second = await open_events(client), await open_events(client)
    body = openai_chat("line one\nline two", model="m", metadata={"note": "x"})
    raw = json.dumps(body, indent=2).encode()  # pretty-printed: line breaks between tokens
    reply = await client.client.post("/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"})
    assert reply.status == 200
    frames = [await complete_data_line(first), await complete_data_line(second)]
    assert frames[0] == frames[1]
    assert b"\n" not in frames[0] and b"\r" not in frames[0]
    # The client's own spacing is there: the body was copied, not re-encoded.
    assert raw.replace(b"\n", b" ") in frames[0]
    event = loads(frames[0])
    assert event["type"] == "complete" and event["request"] == body and event["request_format"] == "openai"
    first.close()
    second.close()


def test_sse_frame_serialises_an_event_once_for_every_stream_then_forgets_it() -> None:
    event = {"type": "complete", "id": "r1", "request": ParsedJSON({"model": "m"}, b'{"model":\r\n"m"}')}
    frame = dashboard.sse_frame(event, uses=3)
    assert frame == b'event: complete\ndata: {"type":"complete","id":"r1","request":{"model":  "m"}}\n\n'
    assert dashboard.sse_frame(event, uses=3) is frame
    assert dashboard.sse_frame(event, uses=3) is frame
    # The last stream has it: the frame (and the event, with its parsed request) is no longer kept.
    assert all(cached[0] is not event for cached in dashboard._FRAMES.values())
    again = dashboard.sse_frame(event)
    assert again == frame and again is not frame
    history = {"type": "complete", "id": "r1", "request": JSONBytes(b'{"model":\r\n"m"}')}
    assert dashboard.sse_frame(history) == frame
    other = {"type": "complete", "id": "r2", "request": {"model": "m"}}
    assert dashboard.sse_frame(other) == b'event: complete\ndata: {"type":"complete","id":"r2","request":{"model":"m"}}\n\n'


def test_sse_frame_is_the_event_as_compact_json_whatever_its_shape() -> None:
    """Every kind of event, with or without a ``request_kb`` limit its request fits in, is framed as
    ``jsonutil.dumps`` writes it (the request kept as bytes included, when they are compact JSON);
    an event with a non-string key, which only the general serialiser takes, too."""
    from llmrouter.jsonutil import dumps

    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \u2028 \"q\""}], "n": 1.5}
    raw = dumps(body)
    events: list[dict[str, Any]] = [
        {"type": "start", "id": "a", "ts_ms": 1, "model": "m", "endpoint": "/v1/chat/completions",
         "in_flight": 2, "key": None},
        {"type": "classified", "id": "a", "ts_ms": 2, "tags": ["code", "ünï"]},
        {"type": "routed", "id": "a", "ts_ms": 3, "provider": "p", "model": "m", "failover_from": "q"},
        {"type": "complete", "id": "a", "request": ParsedJSON(body, raw), "response": {"content": [{"text": "ok"}]},
         "usage": {"input_tokens": 1, "output_tokens": 2}, "cost_usd": 0.25, "error": None},
        {"type": "complete", "id": "b", "request": JSONBytes(raw), "response": None},
        {"type": "complete", "id": "c", "request": dict(body), "response": None},
        {"type": "complete", "id": "d", "request": None, "error": "bad"},
        {"type": "dropped", "count": 3, "ts_ms": 4},
        {"type": "circuit", "state": "open", "by_status": {500: 3, "other": 1}},
    ]
    for event in events:
        plain = {**event, "request": body} if isinstance(event.get("request"), ParsedJSON | JSONBytes) else event
        expected = b"event: " + event["type"].encode() + b"\ndata: " + dumps(plain) + b"\n\n"
        for limit in (None, 16 * 1024):
            assert dashboard.sse_frame(event, limit=limit) == expected, (event["type"], limit)


@pytest.mark.parametrize("size", [100, 200_000])
def test_a_request_kept_as_bytes_goes_into_the_frame_as_sent_without_line_breaks(size: int) -> None:
    """Small and big (each is copied its own way): the client's spacing stays, line breaks (which
    can only be whitespace between JSON tokens) become spaces, the rest of the event is compact."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * size}]}
    raw = json.dumps(body, indent=1).replace("\n", "\r\n").encode()
    event = {"type": "complete", "id": "r", "request": ParsedJSON(body, raw), "response": {"a": [1, 2]}}
    frame = dashboard.sse_frame(event)
    spaced = raw.replace(b"\r", b" ").replace(b"\n", b" ")
    assert frame == b'event: complete\ndata: {"type":"complete","id":"r","request":' + spaced + \
        b',"response":{"a":[1,2]}}\n\n'


async def test_events_gather_between_writes_but_a_backlog_is_sent_without_pausing(
        router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a write the stream lets events gather for ``BATCH_S`` (one write for many under load);
    a backlog bigger than one write goes out write after write, so nothing is held back or dropped."""
    monkeypatch.setattr(dashboard, "BATCH_S", 0.2)
    client = await router(ECHO)
    bus = client.app[BUS]
    resp = await open_events(client)
    bus.publish({"type": "start", "id": "first"})
    assert (await next_event(resp))[1]["id"] == "first"  # a lone event goes out at once
    count = 5 * dashboard.WRITE_BATCH
    for i in range(count):  # a burst while the stream waits: more than one write holds
        bus.publish({"type": "start", "id": str(i)})
    started = asyncio.get_running_loop().time()
    got = [await next_event(resp) for _ in range(count)]
    assert [d["id"] for _, d in got] == [str(i) for i in range(count)]
    # Within one gathering pause (0.2 s) plus slack, not one pause per write (5 writes: 1 s).
    assert asyncio.get_running_loop().time() - started < 0.6
    resp.close()
