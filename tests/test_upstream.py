"""The shared upstream client: the buffered fast path, streaming, content decoding, respx interception."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
import respx
from aiohttp import web

from llmrouter.upstream.client import iter_chunks, new_http_client, post, send


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


async def test_post_sends_what_send_would_and_reads_replies_whole(aiohttp_server: Any) -> None:
    """``post`` (the provider calls' path): headers, body and timeouts reach the upstream as given;
    a plain reply comes back read, a gzipped one decoded, an error with its ``Retry-After``."""
    seen: list[tuple[str, str | None, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("x-test"), await request.read()))
        if request.path == "/busy":
            return web.json_response({"error": "busy"}, status=429, headers={"Retry-After": "7"})
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(b'{"zipped": true}'),
                                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{name}", record)
    server = await aiohttp_server(app)
    client = new_http_client()
    timeout = httpx.Timeout(5.0).as_dict()
    try:
        for name, status, content in (("plain", 200, {"ok": True}), ("gzip", 200, {"zipped": True}),
                                      ("busy", 429, {"error": "busy"})):
            url = httpx.URL(f"http://127.0.0.1:{server.port}/{name}")
            reply = await post(client, url, b'{"q": 1}', {"content-type": "application/json", "x-test": name},
                               timeout)
            assert reply.status_code == status and json.loads(reply.content) == content
        assert reply.headers.get("retry-after") == "7"
        assert seen == [(f"/{n}", n, b'{"q": 1}') for n in ("plain", "gzip", "busy")]
        stream = await post(client, httpx.URL(f"http://127.0.0.1:{server.port}/plain"), b"{}", {}, timeout,
                            stream=True)
        assert isinstance(stream, httpx.Response)
        assert b"".join([chunk async for chunk in stream.aiter_bytes()]) == b'{"ok": true}'
        await stream.aclose()
    finally:
        await client.aclose()


async def test_post_through_a_mock_transport_builds_the_request() -> None:
    """Any transport but the default one gets a real ``httpx.Request`` (respx sees it)."""
    client = new_http_client()
    try:
        with respx.mock(using="httpx") as mock:
            route = mock.post("http://provider.test/v1/chat").respond(json={"mocked": True})
            reply = await post(client, httpx.URL("http://provider.test/v1/chat"), b"{}", {"x-test": "1"},
                               httpx.Timeout(5.0).as_dict())
        assert reply.json() == {"mocked": True}
        assert route.calls.last.request.headers["x-test"] == "1"
    finally:
        await client.aclose()


async def test_post_maps_transport_errors_to_the_matching_httpx_errors(aiohttp_server: Any) -> None:
    """Replies read whole (``post``'s fast path): a refused connection is an ``httpx.ConnectError``
    and a reply cut off a ``RemoteProtocolError``, each caused by aiohttp's own error; anything that
    is not a transport error comes out as it was raised."""
    async def cut(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/cut", cut)
    server = await aiohttp_server(app)
    client = new_http_client()
    timeout = httpx.Timeout(5.0).as_dict()
    try:
        for url, expected in (("http://127.0.0.1:9/none", httpx.ConnectError),
                              (f"http://127.0.0.1:{server.port}/cut", httpx.RemoteProtocolError)):
            try:
                await post(client, httpx.URL(url), b"{}", {}, timeout)
            except httpx.HTTPError as exc:
                assert type(exc) is expected, (url, exc)
                assert exc.__cause__ is not None and not isinstance(exc.__cause__, httpx.HTTPError)
            else:
                raise AssertionError(f"expected {expected.__name__} for {url}")
        broken = ValueError("not a transport error")

        async def boom(*args: Any, **kwargs: Any) -> Any:
            raise broken

        session = client._transport.get_client()  # type: ignore[attr-defined]
        client._transport.client = session  # type: ignore[attr-defined]
        session._request = boom  # type: ignore[method-assign]
        try:
            await post(client, httpx.URL(f"http://127.0.0.1:{server.port}/cut"), b"{}", {}, timeout)
        except ValueError as exc:
            assert exc is broken and exc.__cause__ is None
        else:
            raise AssertionError("expected the ValueError itself")
    finally:
        await client.aclose()


async def test_streamed_chunks_straight_from_aiohttp_and_encoded_ones_through_httpx(aiohttp_server: Any) -> None:
    """``iter_chunks`` gives what ``aiter_bytes()`` gives: pieces as they arrive, a gzipped stream
    decoded, and a reply cut short as an httpx error."""

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"zipped stream"), headers={"Content-Encoding": "gzip"})

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"only part")
        assert request.transport is not None
        request.transport.close()
        return response

    base = await upstream_app(aiohttp_server)
    app = web.Application()
    app.router.add_post("/gzip", gzipped)
    app.router.add_post("/cut", cut)
    other = await aiohttp_server(app)
    client = new_http_client()
    timeout = httpx.Timeout(5.0).as_dict()
    try:
        for url, expected in ((f"{base}/chunks", b"one two three"),
                              (f"http://127.0.0.1:{other.port}/gzip", b"zipped stream")):
            response = await post(client, httpx.URL(url), b"{}", {}, timeout, stream=True)
            assert b"".join([chunk async for chunk in iter_chunks(response)]) == expected
            await response.aclose()
        response = await post(client, httpx.URL(f"http://127.0.0.1:{other.port}/cut"), b"{}", {}, timeout,
                              stream=True)
        with pytest.raises(httpx.HTTPError):
            async for _ in iter_chunks(response):
                pass
        await response.aclose()
    finally:
        await client.aclose()


async def test_cookies_an_upstream_sets_are_never_sent_back(aiohttp_server: Any) -> None:
    """The router forwards requests of many clients: a cookie one reply sets (a CDN's bot-management
    cookie, say) must not ride along on the next client's request, on either path to aiohttp."""
    cookies_seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("__cf_bm", "abc123", path="/")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat", handler)
    server = await aiohttp_server(app)
    url = f"http://localhost:{server.port}/v1/chat"  # (a host name: cookie jars ignore IP hosts)
    client = new_http_client()
    timeout = httpx.Timeout(5.0).as_dict()
    try:
        for _ in range(2):
            reply = await post(client, httpx.URL(url), b"{}", {"Content-Type": "application/json"}, timeout)
            assert reply.status_code == 200
        for _ in range(2):
            response = await send(client, httpx.Request("POST", url, content=b"{}"))
            assert response.status_code == 200
    finally:
        await client.aclose()
    assert cookies_seen == [None, None, None, None]
