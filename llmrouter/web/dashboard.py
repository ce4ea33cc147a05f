"""``GET /dashboard`` (the self-contained page) and ``GET /dashboard/events`` (the bus as SSE).

Each SSE frame is ``event: <type>`` plus one ``data:`` line holding the event as JSON (which also
carries ``"type"``). A comment line goes out every :data:`SSE_KEEPALIVE_S` seconds so proxies keep
the connection open and a vanished client is noticed; its subscription is then closed. On shutdown
every stream ends at once, so open dashboards never hold the server up.

``?history=N`` first replays up to ``N`` recent ``complete`` events (the dashboard page uses it to
show recent traffic when it is opened).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from llmrouter.jsonutil import dumps
from llmrouter.observe.events import JSONBytes, ParsedJSON, Subscription, SubscriptionClosed

SSE_KEEPALIVE_S = 15.0
SUBSCRIBER_QUEUE = 1000
MAX_HISTORY = 500
RETRY_MS = 2000

_STREAMS = web.AppKey("dashboard_streams", set)
# Frames being sent, by event identity: [event, frame, streams still to ask for it]. The event is
# kept so its id is not reused while cached; the entry goes once the last stream has its frame.
_FRAMES: dict[int, list[Any]] = {}
_MAX_FRAMES = 32
# Where the request's bytes go in an event serialised without them: orjson never writes a NUL byte.
_HOLE = b"\x00"


def sse_frame(event: dict[str, object], uses: int = 1) -> bytes:
    """One event as an SSE frame, serialised once however many dashboards are subscribed.

    ``uses`` is how many streams will ask for this event's frame: it is kept until the last of them
    has it (at most :data:`_MAX_FRAMES` frames are kept). A ``request`` kept as the client's bytes
    (:class:`ParsedJSON`, or :class:`JSONBytes` in the history) is copied into the frame once, not
    encoded again; its line breaks (whitespace between JSON tokens) become spaces, since a ``data:``
    line must not contain one."""
    key = id(event)
    cached = _FRAMES.get(key)
    if cached is not None and cached[0] is event:
        cached[2] -= 1
        if cached[2] <= 0:
            del _FRAMES[key]
        return cached[1]
    head = b"event: " + str(event.get("type", "message")).encode() + b"\ndata: "
    request = event.get("request")
    if isinstance(request, ParsedJSON | JSONBytes):
        raw = request.raw
        before, after = dumps({**event, "request": orjson.Fragment(_HOLE)}).split(_HOLE)
        frame = b"".join((head, before, raw, after, b"\n\n"))
        # Looked for in the copy, which is in the cache now, rather than in the client's bytes.
        start = len(head) + len(before)
        if frame.find(b"\n", start, start + len(raw)) >= 0 or frame.find(b"\r", start, start + len(raw)) >= 0:
            raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
            frame = b"".join((head, before, raw, after, b"\n\n"))
    else:
        frame = b"".join((head, dumps(event), b"\n\n"))
    if uses > 1:
        _FRAMES[key] = [event, frame, uses - 1]
        if len(_FRAMES) > _MAX_FRAMES:
            del _FRAMES[next(iter(_FRAMES))]
    return frame


async def dashboard_page(request: web.Request) -> web.Response:
    """Serve the dashboard page (no external assets)."""
    html = resources.files("llmrouter").joinpath("web/static/dashboard.html").read_bytes()
    return web.Response(body=html, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


def _history_limit(request: web.Request) -> int:
    try:
        return max(0, min(MAX_HISTORY, int(request.query.get("history", "0"))))
    except ValueError:
        raise web.HTTPBadRequest(text="history must be an integer") from None


async def dashboard_events(request: web.Request) -> web.StreamResponse:
    """Stream every bus event as SSE, with keep-alive comments, until the client or server goes away."""
    from llmrouter.web.app import BUS

    bus = request.app[BUS]
    limit = _history_limit(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # Snapshot and subscribe with no await in between, so no event is both replayed and delivered.
    recent = getattr(bus, "recent_compact", bus.recent)  # the bytes are all a frame needs
    backlog = recent(limit)
    subscription = bus.subscribe(SUBSCRIBER_QUEUE)
    streams: set[Subscription] = request.app[_STREAMS]
    streams.add(subscription)
    try:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        if backlog:
            await response.write(b"".join(sse_frame(event) for event in backlog))
        while True:
            event = subscription.poll()
            if event is None:
                try:
                    async with asyncio.timeout(SSE_KEEPALIVE_S):
                        event = await subscription.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
            await response.write(sse_frame(event, len(streams)))
    except (ConnectionError, SubscriptionClosed):
        pass  # the client went away, or the server is shutting down
    finally:
        subscription.close()
        streams.discard(subscription)
    return response


async def _close_streams(app: web.Application) -> None:
    for subscription in list(app[_STREAMS]):
        subscription.close()


def add_dashboard_routes(app: web.Application) -> None:
    """Mount the dashboard routes on ``app``."""
    app[_STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/events", dashboard_events)
