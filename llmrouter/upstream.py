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
                headers=request.headers,
                data=request.content or None,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                      connect=timeout.get("pool")),
            ) as response:
                body = await response.read()
        return httpx.Response(status_code=response.status, headers=response.raw_headers, content=body,
                              request=request, extensions={"http_version": b"HTTP/1.1"})


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
