"""The shared upstream HTTP client.

One ``httpx.AsyncClient`` per process, backed by ``httpx_aiohttp.AiohttpTransport``: the httpx API
(which respx can mock) on aiohttp's connection pool, which holds up under concurrency where plain
httpx's pool collapses (see docs/performance.md).
"""

from __future__ import annotations

import httpx
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

MAX_CONNECTIONS = 512
KEEPALIVE_EXPIRY_S = 30.0
BUFFERED = "llmrouter.buffered"
_KEPT_HEADERS = frozenset({b"content-type", b"content-encoding", b"retry-after", b"request-id", b"x-request-id"})


class ProviderTransport(AiohttpTransport):
    """``AiohttpTransport`` with a fast path for replies read whole.

    A request whose extensions carry ``BUFFERED`` is answered with the complete body read by
    aiohttp in one call, instead of being relayed chunk by chunk through httpx's stream machinery;
    httpx still applies content decoding. Streaming requests take the parent's path unchanged.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; buffered requests come back with their body already read."""
        if not request.extensions.get(BUFFERED):
            return await super().handle_async_request(request)
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        with map_aiohttp_exceptions():
            async with self.client.request(
                method=request.method,
                url=str(request.url),
                # Plain pairs: aiohttp would otherwise look every header up in httpx's Headers one by one.
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                data=request.content or None,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                      connect=timeout.get("pool")),
            ) as response:
                body = await response.read()
        # Only the headers the router reads: providers send dozens (rate limits, tracing) and
        # httpx normalises every one it is given.
        headers = [(k, v) for k, v in response.raw_headers if k.lower() in _KEPT_HEADERS]
        return _buffered_response(response.status, headers, body, request)


def _buffered_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                       request: httpx.Request) -> httpx.Response:
    """An httpx response around a body read whole. Without a content encoding the body is attached
    as already read, skipping httpx's per-chunk decoding pipeline; with one, httpx decodes it."""
    if any(k.lower() == b"content-encoding" for k, _ in headers):
        return httpx.Response(status_code=status, headers=headers, content=body, request=request)
    response = httpx.Response(status_code=status, headers=headers, stream=httpx.ByteStream(body), request=request)
    response._content = body  # what Response.read() would store; the stream stays readable too
    return response


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A pooled async client; ``transport`` overrides the aiohttp-backed default (tests)."""
    if transport is None:
        transport = ProviderTransport(
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S),
            trust_env=False,
        )
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(60.0, connect=10.0), trust_env=False)


async def send(client: httpx.AsyncClient, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
    """Send ``request`` straight through ``client``'s transport and return the response.

    Provider calls need none of the client-level machinery (cookie jar, auth flows, redirects,
    event hooks), and skipping it removes most of httpx's per-request cost (see
    docs/performance.md). respx still intercepts: it patches the client's transport lookup.
    With ``stream=False`` the body is read and the connection released before returning.
    """
    if not stream:
        request.extensions[BUFFERED] = True
    transport = client._transport_for_url(request.url)
    response = await transport.handle_async_request(request)
    response.request = request
    if not stream:
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response
