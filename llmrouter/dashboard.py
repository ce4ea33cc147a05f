"""``GET /dashboard`` (the self-contained page) and ``GET /dashboard/events`` (the bus as SSE)."""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

from llmrouter.jsonutil import dumps

SSE_KEEPALIVE_S = 15.0
SUBSCRIBER_QUEUE = 1000


async def dashboard_page(request: web.Request) -> web.Response:
    """Serve the dashboard page (no external assets)."""
    html = resources.files("llmrouter").joinpath("static/dashboard.html").read_bytes()
    return web.Response(body=html, content_type="text/html", charset="utf-8")


async def dashboard_events(request: web.Request) -> web.StreamResponse:
    """Stream every bus event as SSE (``event: <type>``, JSON ``data``) with keep-alive comments."""
    from llmrouter.server import BUS

    bus = request.app[BUS]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    subscription = bus.subscribe(SUBSCRIBER_QUEUE)
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(subscription.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(b"event: " + str(event.get("type", "message")).encode() + b"\ndata: "
                                 + dumps(event) + b"\n\n")
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        subscription.close()
    return response


def add_dashboard_routes(app: web.Application) -> None:
    """Mount the dashboard routes on ``app``."""
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/events", dashboard_events)
