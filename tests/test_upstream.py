"""The shared upstream client: the buffered fast path, streaming, content decoding, respx interception."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import respx
from aiohttp import web

from llmrouter.upstream.client import new_http_client, send


async def upstream_app(aiohttp_server: Any) -> str:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"echo": (await request.json())["x"]})

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"zipped": true}'),
                            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    async def chunks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for piece in (b"one ", b"two ", b"three"):
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/plain", plain)
    app.router.add_post("/gzip", gzipped)
    app.router.add_post("/chunks", chunks)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_buffered_reply_is_read_whole(aiohttp_server: Any) -> None:
    base = await upstream_app(aiohttp_server)
    client = new_http_client()
    try:
        response = await send(client, httpx.Request("POST", f"{base}/plain", json={"x": 42}))
        assert response.status_code == 200 and response.json() == {"echo": 42}
        response = await send(client, httpx.Request("POST", f"{base}/gzip", content=b"{}"))
        assert response.json() == {"zipped": True}
    finally:
        await client.aclose()


async def test_streamed_reply_arrives_in_pieces(aiohttp_server: Any) -> None:
    base = await upstream_app(aiohttp_server)
    client = new_http_client()
    try:
        response = await send(client, httpx.Request("POST", f"{base}/chunks", content=b"{}"), stream=True)
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        await response.aclose()
        assert body == b"one two three"
    finally:
        await client.aclose()


async def test_connection_refused_is_an_httpx_error() -> None:
    client = new_http_client()
    try:
        try:
            await send(client, httpx.Request("POST", "http://127.0.0.1:9/none", content=b"{}"))
        except httpx.HTTPError:
            pass
        else:
            raise AssertionError("expected an httpx error")
    finally:
        await client.aclose()


async def test_respx_intercepts_the_fast_path() -> None:
    client = new_http_client()
    try:
        with respx.mock(using="httpx") as mock:
            route = mock.post("http://provider.test/v1/chat").respond(json={"mocked": True})
            response = await send(client, httpx.Request("POST", "http://provider.test/v1/chat", content=b"{}"))
        assert response.json() == {"mocked": True}
        assert route.called
    finally:
        await client.aclose()
