"""``GET /dashboard`` (the self-contained page) and ``GET /dashboard/events`` (the bus as SSE).

Each SSE frame is ``event: <type>`` plus one ``data:`` line holding the event as JSON (which also
carries ``"type"``). A comment line goes out every :data:`SSE_KEEPALIVE_S` seconds so proxies keep
the connection open and a vanished client is noticed; its subscription is then closed. On shutdown
every stream ends at once, so open dashboards never hold the server up.

``?history=N`` first replays up to ``N`` recent ``complete`` events (the dashboard page uses it to
show recent traffic when it is opened). ``?request_kb=N`` sends a request bigger than N KB as a
preview (:mod:`llmrouter.web.request_preview`); ``GET /dashboard/requests/{id}`` returns a recent
request whole.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from llmrouter.jsonutil import dumps, one_line
from llmrouter.observe.events import JSONBytes, ParsedJSON, Subscription, SubscriptionClosed
from llmrouter.web.request_preview import Preview, preview, request_json

SSE_KEEPALIVE_S = 15.0
SUBSCRIBER_QUEUE = 1000
MAX_HISTORY = 500
RETRY_MS = 2000

MAX_REQUEST_KB = 1 << 20
WRITE_BATCH = 64
BATCH_S = 0.005
"""After a write, events gather for this long before the next one: under load one wake-up of the
stream and one write carry the events of many requests instead of a few; the first event after a
quiet spell goes out at once."""

# Open streams and the ``request_kb`` limit (in bytes, or None) each asked for.
_STREAMS = web.AppKey("dashboard_streams", dict)
# Frames being sent, by event identity and limit: [event, frame, streams still to ask for it]. The
# event is kept so its id is not reused while cached; the entry goes once the last stream has it.
_FRAMES: dict[tuple[int, int | None], list[Any]] = {}
_MAX_FRAMES = 32
# Previews by the identity of the request's bytes, which a live event and the history's copy of it
# share: [bytes, {limit: Preview}]. As many as the history keeps, so a replay finds them.
_PREVIEWS: dict[int, list[Any]] = {}
_MAX_PREVIEWS = 200
# "event: <type>\ndata: " by type (bounded: a cluster peer's events may have types of their own).
_HEADS: dict[str, bytes] = {}
_MAX_HEADS = 64
# A request's bytes up to this size go into the frame through orjson (two copies, fewer steps).
_COPY_ONCE = 64 * 1024
# Where the request's bytes go in an event serialised without them: orjson never writes a NUL byte.
_HOLE = b"\x00"
_AS_SENT = (ParsedJSON, JSONBytes)  # (a tuple: a union written in place is built at each call)


def sse_frame(event: dict[str, object], uses: int = 1, limit: int | None = None) -> bytes:
    """One event as an SSE frame, serialised once however many dashboards are subscribed.

    ``uses`` is how many streams (with this ``limit``) will ask for this event's frame: it is kept
    until the last of them has it (at most :data:`_MAX_FRAMES` frames are kept). A ``request`` kept
    as the client's bytes (:class:`ParsedJSON`, or :class:`JSONBytes` in the history) is copied into
    the frame once, not encoded again; its line breaks (whitespace between JSON tokens) become
    spaces, since a ``data:`` line must not contain one. With ``limit`` (bytes), a bigger request
    is sent as its preview."""
    key = (id(event), limit)
    cached = _FRAMES.get(key)
    if cached is not None and cached[0] is event:
        cached[2] -= 1
        if cached[2] <= 0:
            del _FRAMES[key]
        return cached[1]
    kind = event.get("type", "message")
    head = _HEADS.get(kind) if type(kind) is str else None
    if head is None:
        head = b"event: " + str(kind).encode() + b"\ndata: "
        if type(kind) is str and len(_HEADS) < _MAX_HEADS:
            _HEADS[kind] = head
    request = event.get("request")
    raw = request.raw if isinstance(request, _AS_SENT) else None
    # A request kept as bytes and within the limit goes whole: no preview to compute (or cache).
    cut = _preview(request, limit) if limit is not None and request is not None \
        and (raw is None or len(raw) > limit) else None
    if cut is not None and (cut.omitted is not None or raw is None):
        # A preview, or a request the preview serialised anyway to measure it: not encoded again.
        fields: dict[str, Any] = {"request": orjson.Fragment(cut.request)}
        if cut.omitted is not None:
            fields["request_omitted"] = cut.omitted
        frame = b"".join((head, dumps({**event, **fields}), b"\n\n"))
    elif raw is not None and len(raw) <= _COPY_ONCE:
        frame = b"".join((head, dumps({**event, "request": orjson.Fragment(one_line(raw))}), b"\n\n"))
    elif raw is not None:
        # Big: the bytes are copied once, into the frame, not into orjson's output and then again.
        before, after = dumps({**event, "request": orjson.Fragment(_HOLE)}).split(_HOLE)
        frame = b"".join((head, before, raw, after, b"\n\n"))
        # Looked for in the copy, which is in the cache now, rather than in the client's bytes.
        start = len(head) + len(before)
        if frame.find(b"\n", start, start + len(raw)) >= 0 or frame.find(b"\r", start, start + len(raw)) >= 0:
            frame = b"".join((head, before, one_line(raw), after, b"\n\n"))
    else:
        frame = b"".join((head, dumps(event), b"\n\n"))
    if uses > 1:
        _FRAMES[key] = [event, frame, uses - 1]
        if len(_FRAMES) > _MAX_FRAMES:
            del _FRAMES[next(iter(_FRAMES))]
    return frame


def _preview(request: Any, limit: int) -> Preview:
    if not isinstance(request, _AS_SENT):
        return preview(request, limit)
    raw = request.raw
    entry = _PREVIEWS.get(id(raw))
    if entry is None or entry[0] is not raw:
        entry = _PREVIEWS[id(raw)] = [raw, {}]
        if len(_PREVIEWS) > _MAX_PREVIEWS:
            del _PREVIEWS[next(iter(_PREVIEWS))]
    found = entry[1].get(limit)
    if found is None:
        found = entry[1][limit] = preview(request, limit)
    return found


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


def _request_limit(request: web.Request) -> int | None:
    value = request.query.get("request_kb")
    if value is None:
        return None
    if not value.isdigit() or int(value) > MAX_REQUEST_KB:
        raise web.HTTPBadRequest(text=f"request_kb must be a whole number of KB (0 to {MAX_REQUEST_KB}), "
                                      f"not {value!r}")
    return int(value) * 1024


async def dashboard_events(request: web.Request) -> web.StreamResponse:
    """Stream every bus event as SSE, with keep-alive comments, until the client or server goes away."""
    from llmrouter.web.app import BUS

    bus = request.app[BUS]
    limit = _history_limit(request)
    request_limit = _request_limit(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # Snapshot and subscribe with no await in between, so no event is both replayed and delivered.
    recent = getattr(bus, "recent_compact", bus.recent)  # the bytes are all a frame needs
    backlog = recent(limit)
    subscription = bus.subscribe(SUBSCRIBER_QUEUE)
    streams: dict[Subscription, int | None] = request.app[_STREAMS]
    streams[subscription] = request_limit
    loop = asyncio.get_running_loop()
    keepalive = _KeepAlive(loop, subscription, SSE_KEEPALIVE_S)
    try:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        if backlog:
            await response.write(b"".join(sse_frame(event, limit=request_limit) for event in backlog))
        while True:
            event = subscription.poll()
            if event is None:
                await subscription.wait()
                if keepalive.due():
                    await response.write(b": keep-alive\n\n")
                    keepalive.last = loop.time()
                continue
            uses = sum(1 for other in streams.values() if other == request_limit)
            frames = [sse_frame(event, uses, request_limit)]
            # Under load several events are waiting by now: one write (one system call) for all.
            while len(frames) < WRITE_BATCH and (event := subscription.poll()) is not None:
                frames.append(sse_frame(event, uses, request_limit))
            await response.write(frames[0] if len(frames) == 1 else b"".join(frames))
            keepalive.last = loop.time()
            if len(frames) < WRITE_BATCH:  # all sent: let the next events gather (a backlog goes on at once)
                await asyncio.sleep(BATCH_S)
    except (ConnectionError, SubscriptionClosed):
        pass  # the client went away, or the server is shutting down
    finally:
        keepalive.cancel()
        subscription.close()
        streams.pop(subscription, None)
    return response


class _KeepAlive:
    """One timer per stream that wakes its reader once nothing was written for ``period`` seconds
    (the reader then writes a keep-alive comment and sets :attr:`last`): no timeout is armed and
    cancelled around each wait for events, which under load happens for every few requests."""

    __slots__ = ("_handle", "_loop", "_period", "_subscription", "last")

    def __init__(self, loop: asyncio.AbstractEventLoop, subscription: Subscription, period: float) -> None:
        self._loop = loop
        self._subscription = subscription
        self._period = period
        self.last = loop.time()
        """When the stream was last written to (loop time)."""
        self._handle = loop.call_at(self.last + period, self._tick)

    def due(self) -> bool:
        """Whether a keep-alive comment is due (a millisecond early counts: timers may fire early)."""
        return self._loop.time() >= self.last + self._period - 0.001

    def _tick(self) -> None:
        if self.due():
            self._subscription.wake()
            self._handle = self._loop.call_at(self._loop.time() + self._period, self._tick)
        else:
            self._handle = self._loop.call_at(self.last + self._period, self._tick)

    def cancel(self) -> None:
        """Stop the timer (the stream is over)."""
        self._handle.cancel()


async def dashboard_request(request: web.Request) -> web.Response:
    """One recent request whole, as the client sent it (JSON), while the bus's history holds it."""
    from llmrouter.web.app import BUS

    bus = request.app[BUS]
    wanted = request.match_info["id"]
    recent = getattr(bus, "recent_compact", bus.recent)
    for event in reversed(recent(MAX_HISTORY)):
        if event.get("id") != wanted:
            continue
        body = event.get("request")
        if body is None:
            why = "was rejected before its body was read" if "bodies_omitted" not in event \
                else "came from another node without its body"
            return _not_found(f"request {wanted} has no request to show: it {why}")
        return web.Response(body=request_json(body), content_type="application/json")
    return _not_found(f"request {wanted} is not among the last {MAX_HISTORY} requests this node keeps; "
                      "the request log has every request")


def _not_found(message: str) -> web.Response:
    return web.Response(status=404, body=dumps({"error": {"type": "not_found_error", "message": message}}),
                        content_type="application/json")


async def _close_streams(app: web.Application) -> None:
    for subscription in list(app[_STREAMS]):
        subscription.close()


def add_dashboard_routes(app: web.Application) -> None:
    """Mount the dashboard routes on ``app``."""
    app[_STREAMS] = {}
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/events", dashboard_events)
    app.router.add_get("/dashboard/requests/{id}", dashboard_request)
