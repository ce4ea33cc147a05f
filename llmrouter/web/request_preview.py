"""Big requests cut down for a live view (``/dashboard/events?request_kb=N``).

An agent resends its whole conversation every turn, so a feed carrying every ``complete`` event's
``request`` in full moves hundreds of KB per request to each open dashboard: more than a browser
can parse and, on loopback, the largest single cost of serving an agent's request. A subscriber
that asks for ``request_kb=N`` gets a request whose JSON is over N KB as a *preview*:

- the request's other top-level fields, except ``system``, ``instructions`` and ``tools``;
- the last :data:`TAIL` items of its conversation (``messages``, or the Responses API's ``input``),
  fewer if they do not fit in N KB, none if even the last one does not.

The event then carries ``request_omitted``: ``bytes`` (the whole request's JSON size), ``items``
(conversation items left out) and ``fields`` (top-level fields left out). The whole request stays
available from ``GET /dashboard/requests/{id}`` while the bus's history holds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter.jsonutil import dumps
from llmrouter.observe.events import JSONBytes, ParsedJSON

TAIL = 4
LEFT_OUT = ("system", "instructions", "tools")
CONVERSATION = ("messages", "input")
_SKIPPED = LEFT_OUT + CONVERSATION
_AS_SENT = (ParsedJSON, JSONBytes)  # (a tuple: a union written in place is built at each call)


class Preview:
    """What a ``request_kb`` subscriber gets in place of one request: ``request`` (serialised JSON to
    put in the frame as is) and ``omitted`` (the ``request_omitted`` note, or None when the request
    is sent whole)."""

    __slots__ = ("omitted", "request")

    def __init__(self, request: bytes, omitted: dict[str, Any] | None) -> None:
        self.request = request
        self.omitted = omitted


def request_json(request: Any) -> bytes:
    """The serialised JSON of a ``complete`` event's ``request`` (the client's own bytes when kept)."""
    if isinstance(request, _AS_SENT):
        return request.raw
    return dumps(request)


def preview(request: Any, limit: int) -> Preview:
    """``request`` (a ``complete`` event's) whole when its JSON is at most ``limit`` bytes, else its
    preview (see the module notes)."""
    raw = request_json(request)
    body = request
    if len(raw) > limit and isinstance(request, JSONBytes):
        body = request.parsed()
    if len(raw) <= limit or not (type(body) is ParsedJSON or isinstance(body, Mapping)):
        return Preview(raw, None)
    return _cut(body, len(raw), limit)


def _cut(body: Mapping[str, Any], size: int, limit: int) -> Preview:
    kept = dict(body)
    for key in _SKIPPED:
        if key in kept:
            del kept[key]
    name = "messages" if "messages" in body else "input" if "input" in body else None
    whole = body[name] if name is not None else None
    items = whole if isinstance(whole, list) else [whole] if name is not None else []
    count, encoded = 0, b""
    # (the conversation goes last, as into a copy of the other fields: kept is that copy)
    for count in dict.fromkeys((min(TAIL, len(items)), 1 if items else 0, 0)):
        if count:
            kept[name] = items[-count:] if isinstance(whole, list) else whole  # type: ignore[index]
        elif name in kept:
            del kept[name]
        encoded = dumps(kept)
        if len(encoded) <= limit:
            break
    fields = [n for n in LEFT_OUT if n in body]
    return Preview(encoded, {"bytes": size, "items": len(items) - count, "fields": fields})
