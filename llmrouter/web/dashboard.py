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

import orjson
from aiohttp import web

from llmrouter.jsonutil import dumps
from llmrouter.observe.events import ParsedJSON, Subscription, SubscriptionClosed

SSE_KEEPALIVE_S = 15.0
SUBSCRIBER_QUEUE = 1000
MAX_HISTORY = 500
RETRY_MS = 2000

_STREAMS = web.AppKey("dashboard_streams", set)
# The latest frames by event identity (the event is kept, so its id is not reused while cached).
_FRAMES: dict[int, tuple[dict[str, object], bytes]] = {}
_MAX_FRAMES = 32


def sse_frame(event: dict[str, object]) -> bytes:
    """One event as an SSE frame, serialised once however many dashboards are subscribed.

    A ``request`` kept as the client's bytes (:class:`ParsedJSON`) is copied into the frame, not
    encoded again; its line breaks (whitespace between JSON tokens) become spaces, since a ``data:``
    line must not contain one."""
    cached = _FRAMES.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    request = event.get("request")
    if isinstance(request, ParsedJSON):
        raw = request.raw
        if b"\n" in raw or b"\r" in raw:
            raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
        data = dumps({**event, "request": orjson.Fragment(raw)})
    else:
        data = dumps(event)
    frame = b"event: " + str(event.get("type", "message")).encode() + b"\ndata: " + data + b"\n\n"
    _FRAMES[id(event)] = (event, frame)
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
    backlog = bus.recent(limit)
    subscription = bus.subscribe(SUBSCRIBER_QUEUE)
    streams: set[Subscription] = request.app[_STREAMS]
    streams.add(subscription)
    try:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        if backlog:
            await response.write(b"".join(sse_frame(event) for event in backlog))
        while True:
            try:
                event = await asyncio.wait_for(subscription.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(sse_frame(event))
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
