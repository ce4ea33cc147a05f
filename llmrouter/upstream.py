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
