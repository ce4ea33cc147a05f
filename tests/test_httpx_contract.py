"""The private httpx / httpx-aiohttp behaviour the upstream fast path relies on.

``llmrouter.upstream.client`` reaches past the public API in three places (docs/performance.md
says why): ``AsyncClient._transport_for_url`` (the hook respx patches), ``Response._content`` (a
body attached as already read) and httpx-aiohttp's exception mapping and ``client``/``get_client``
attributes. pyproject.toml pins both packages below their next minor release; these tests fail
loudly, naming the broken assumption, when a release changes any of it.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import respx
from httpx_aiohttp import AiohttpTransport

from llmrouter.upstream.client import ProviderTransport, _buffered_response, new_http_client, send


def test_async_client_routes_requests_through_transport_for_url() -> None:
    """``send`` asks the client which transport serves a URL, as httpx itself does."""
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    client = httpx.AsyncClient(transport=transport)
    assert callable(getattr(client, "_transport_for_url", None)), "httpx removed AsyncClient._transport_for_url"
    assert client._transport_for_url(httpx.URL("http://example.invalid/x")) is transport


async def test_respx_httpx_mocker_intercepts_send() -> None:
    """respx's ``using="httpx"`` mocker patches the lookup ``send`` uses, so provider mocks work."""
    client = new_http_client()
    try:
        with respx.mock(using="httpx") as mock:
            mock.post("http://upstream.invalid/v1/chat").respond(200, json={"ok": True})
            response = await send(client, client.build_request("POST", "http://upstream.invalid/v1/chat",
                                                               content=b"{}"))
        assert response.status_code == 200 and response.json() == {"ok": True}
    finally:
        await client.aclose()


async def test_a_body_attached_as_read_behaves_like_a_read_response() -> None:
    """``Response._content`` set by hand is what ``.content``, ``.aread()`` and ``.json()`` return."""
    request = httpx.Request("POST", "http://upstream.invalid/")
    response = _buffered_response(200, [(b"content-type", b"application/json")], b'{"a": 1}', request)
    assert response.content == b'{"a": 1}'
    assert await response.aread() == b'{"a": 1}'
    assert response.json() == {"a": 1}
    await response.aclose()


def test_aiohttp_transport_keeps_its_client_attributes() -> None:
    """``ProviderTransport`` reuses the parent's session attribute and factory."""
    transport = AiohttpTransport()
    assert hasattr(transport, "client") and callable(getattr(transport, "get_client", None))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("buffered", [True, False])
async def test_a_refused_connection_is_a_connect_error_not_a_timeout(buffered: bool) -> None:
    """The mapping from aiohttp's errors keeps 'refused' apart from 'timed out' (502 vs 504)."""
    client = new_http_client()
    try:
        request = client.build_request("POST", f"http://127.0.0.1:{_closed_port()}/v1", content=b"{}")
        with pytest.raises(httpx.ConnectError) as info:
            await send(client, request, stream=not buffered)
        assert not isinstance(info.value, httpx.TimeoutException)
    finally:
        await client.aclose()


async def test_a_silent_server_is_a_read_timeout() -> None:
    """A server that accepts and never answers ends in ``httpx.ReadTimeout`` on the buffered path."""

    async def accept_and_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(accept_and_hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = new_http_client()
    try:
        request = client.build_request("POST", f"http://127.0.0.1:{port}/v1", content=b"{}",
                                       timeout=httpx.Timeout(5.0, read=0.2))
        with pytest.raises(httpx.ReadTimeout):
            await send(client, request)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


def test_the_default_transport_is_the_fast_one() -> None:
    """Without an override the client runs on ``ProviderTransport`` (aiohttp's pool)."""
    client = new_http_client()
    assert isinstance(client._transport_for_url(httpx.URL("http://x.invalid/")), ProviderTransport)


@pytest.mark.parametrize("direct", [True, False])
async def test_a_reply_read_whole_releases_its_connection_for_the_next_call(
        aiohttp_server: object, monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    """aiohttp's ``ClientSession._request`` (what ``request()`` wraps) is there and answers a read
    whole exchange; with it (or without, through ``request()``), each reply gives its connection back,
    so sequential calls reuse one connection and the body, status and headers come through."""
    from aiohttp import ClientSession, web

    from llmrouter.upstream import client as client_module

    assert callable(getattr(ClientSession, "_request", None)), "aiohttp removed ClientSession._request"
    monkeypatch.setattr(client_module, "_SESSION_REQUEST", direct)
    peers: set[object] = set()

    async def answer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.Response(body=await request.read(), content_type="application/json",
                            headers={"Retry-After": "3", "X-Other": "x"})

    app = web.Application()
    app.router.add_post("/v1", answer)
    server = await aiohttp_server(app)  # type: ignore[operator]
    client = new_http_client()
    try:
        url = httpx.URL(f"http://127.0.0.1:{server.port}/v1")
        for i in range(5):
            reply = await client_module.post(client, url, b'{"n": %d}' % i, {"content-type": "application/json"},
                                             httpx.Timeout(5.0).as_dict())
            assert (reply.status_code, reply.content) == (200, b'{"n": %d}' % i)
            assert reply.headers.get("retry-after") == "3" and "x-other" not in reply.headers
        assert len(peers) == 1
    finally:
        await client.aclose()
