"""The shared upstream HTTP client.

One ``httpx.AsyncClient`` per process, backed by ``httpx_aiohttp.AiohttpTransport``: the httpx API
(which respx can mock) on aiohttp's connection pool, which holds up under concurrency where plain
httpx's pool collapses (see docs/performance.md).
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

MAX_CONNECTIONS = 512
KEEPALIVE_EXPIRY_S = 30.0


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A pooled async client; ``transport`` overrides the aiohttp-backed default (tests)."""
    if transport is None:
        transport = AiohttpTransport(
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
    transport = client._transport_for_url(request.url)
    response = await transport.handle_async_request(request)
    response.request = request
    if not stream:
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response
