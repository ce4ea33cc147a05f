"""Request body checks: content type, size, nesting depth and message count."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmrouter.errors import InvalidRequest, PayloadTooLarge, RouterError
from llmrouter.formats.gate import Gated
from llmrouter.jsonutil import loads

_JSON_OR_UNDECLARED = frozenset({"application/json", "application/octet-stream"})


async def read_json(request: web.Request, limit_bytes: int) -> Any:
    """Read and decode the body, enforcing the size limit (see :func:`read_body`)."""
    return decode_json(await read_body(request, limit_bytes))


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The request body's bytes (decompressed, de-chunked), enforcing the size limit.

    Read from the payload stream and joined once: aiohttp's ``request.read()`` copies an agent-sized
    body twice more (into a growing bytearray, then into bytes). Read this way, the body is not
    kept by aiohttp: a later ``request.read()`` gives ``b""``, so callers pass these bytes on.

    :raises PayloadTooLarge: over the limit.
    """
    length = request.content_length
    if length is not None and length > limit_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit_bytes} bytes")
    stream = request.content
    if stream.is_eof():  # the whole body is in (a small one usually is, before the handler runs): no wait
        chunk = stream.read_nowait()  # (all of it, joined)
        if len(chunk) > limit_bytes:
            raise _too_large(limit_bytes)
        return chunk
    raise_limits = getattr(stream, "set_read_chunk_size", None)  # (aiohttp >= 3.14; its read() does this)
    if raise_limits is not None:
        raise_limits(limit_bytes + 1)
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > limit_bytes:
            raise _too_large(limit_bytes)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit_bytes} bytes")


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body.

    :raises InvalidRequest: empty or invalid JSON.
    """
    if not body or body.isspace():  # (not body.strip(): no copy of an agent-sized body)
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


class UnsupportedMediaType(RouterError):
    """A request body that is declared as something other than JSON (415)."""

    status = 415
    kind = "invalid_request_error"


def check_content_type(request: web.Request) -> None:
    """Accept bodies declared as JSON (``application/json`` with any parameters, ``application/*+json``)
    or not declared at all (no type, or ``application/octet-stream``, which some HTTP libraries put
    on raw bytes).

    Everything else is refused, ``text/plain`` and form types included: those are what a web page
    can send to a loopback router without a CORS preflight.

    :raises UnsupportedMediaType: for any other declared type.
    """
    declared = request.headers.get("Content-Type")
    if declared is None or declared == "application/json" or not declared.strip():
        return
    mime = request.content_type
    if mime in _JSON_OR_UNDECLARED or (mime.startswith("application/") and mime.endswith("+json")):
        return
    raise UnsupportedMediaType(f"unsupported content type {mime!r}: send the request body as application/json")


def check_limits(body: Any, max_depth: int, max_messages: int, gated: Gated | None = None) -> None:
    """Refuse bodies nested deeper than ``max_depth`` or with more than ``max_messages`` messages.

    ``gated``: what the C-speed gate proved about ``body`` (:mod:`llmrouter.formats.gate`); the
    depth walk then skips the top-level values it typed when their bound is within the limit.

    :raises InvalidRequest: naming the limit.
    """
    if isinstance(body, dict):
        key = "messages" if "messages" in body else "input"  # Responses API requests hold "input" items
        messages = body.get(key)
        if isinstance(messages, list) and len(messages) > max_messages:
            raise InvalidRequest(f"{key}: {len(messages)} messages exceed the limit of {max_messages}")
    if gated is not None and gated.depth <= max_depth:  # (then body is a dict: the gate typed its keys)
        typed = gated.typed
        exceeds = _levels_exceed([v for k, v in body.items() if k not in typed and (type(v) is dict or type(v) is list)],
                                 2, max_depth)
    else:
        exceeds = json_depth_exceeds(body, max_depth)
    if exceeds:
        raise InvalidRequest(f"request body is nested deeper than the limit of {max_depth} levels")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether decoded JSON ``value`` nests containers more than ``limit`` levels deep (a scalar or
    an empty object is depth 1). Walks level by level, looking only at containers."""
    if type(value) is not dict and type(value) is not list:
        return limit < 1
    return _levels_exceed([value], 1, limit)


def _levels_exceed(level: list[Any], depth: int, limit: int) -> bool:
    """Whether the containers ``level`` (dicts and lists only), at nesting level ``depth``, nest
    deeper than ``limit`` levels in all."""
    while level:
        if depth > limit:
            return True
        deeper: list[Any] = []
        push = deeper.append
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    push(child)
        level = deeper
        depth += 1
    return False
