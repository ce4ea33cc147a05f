"""The shared upstream HTTP client.

One ``httpx.AsyncClient`` per process, backed by ``httpx_aiohttp.AiohttpTransport``: the httpx API
(which respx can mock) on aiohttp's connection pool, which holds up under concurrency where plain
httpx's pool collapses (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

import aiohttp
import httpx
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport

MAX_CONNECTIONS = 512
KEEPALIVE_EXPIRY_S = 30.0
BUFFERED = "llmrouter.buffered"
_KEPT_HEADERS = frozenset({b"content-type", b"content-encoding", b"retry-after", b"request-id", b"x-request-id"})


_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, unreachable: nothing was sent
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # the reply was cut
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)
"""aiohttp's errors as httpx's, most specific first. httpx-aiohttp has a mapping of its own, but it
reports a refused connection and a cut reply as connect timeouts; the router's status mapping
(502 unreachable, 502 cut, 504 timeout) needs them apart."""


@contextlib.contextmanager
def httpx_errors() -> Iterator[None]:
    """Re-raise aiohttp's transport errors as the matching ``httpx.TransportError``."""
    try:
        yield
    except Exception as exc:
        _reraise_as_httpx(exc)


def _reraise_as_httpx(exc: Exception) -> NoReturn:
    """Raise ``exc`` as the matching ``httpx.TransportError`` (``exc`` itself when there is none).
    A plain function, so the hot paths can use it in an ``except`` without a context manager."""
    mapped = _as_httpx_error(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _as_httpx_error(exc: Exception) -> Exception:
    """``exc`` as the matching ``httpx.TransportError``; ``exc`` itself when it is an httpx error
    already or no transport error (to be re-raised as it is)."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__)
    return exc


class ProviderTransport(AiohttpTransport):
    """An httpx transport on aiohttp's connection pool, with a fast path for replies read whole.

    httpx-aiohttp provides the session (pool limits, TLS context); requests are sent here so that
    errors map through :func:`httpx_errors`. A request whose extensions carry ``BUFFERED`` is
    answered with the complete body read by aiohttp in one call, instead of being relayed chunk by
    chunk through httpx's stream machinery; httpx still applies content decoding.
    """

    def get_client(self) -> ClientSession:
        """The aiohttp session (pool limits and TLS context from httpx's settings) without a cookie
        jar: the router sends many clients' requests over it, so a cookie one reply sets must never
        ride on the next request (provider calls skip httpx's cookie handling for the same reason),
        and no request pays for looking cookies up."""
        if self.client is not None:  # a session, or a factory, given to the constructor
            return super().get_client()
        limit = self.limits.max_connections
        connector = aiohttp.TCPConnector(limit=limit if limit is not None else 100, ssl=self.ssl_context,
                                         keepalive_timeout=self.limits.keepalive_expiry)
        return ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; buffered requests come back with their body already read."""
        timeout = request.extensions.get("timeout", {})
        response = await self.exchange(
            request.method, str(request.url),
            # Plain pairs: aiohttp would otherwise look every header up in httpx's Headers one by one.
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            request.content or None,
            client_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
            buffered=bool(request.extensions.get(BUFFERED)))
        response.request = request
        return response

    async def exchange(self, method: str, url: str, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                       content: bytes | None, timeout: ClientTimeout, *, buffered: bool,
                       light: bool = False) -> httpx.Response | BufferedReply:
        """One HTTP exchange on aiohttp's pool, as an httpx response without a ``request``: read
        whole (``buffered``) or streamed. :func:`post` calls this directly, without building an
        ``httpx.Request`` first, and with ``light`` a reply read whole and not content-encoded
        comes back as a :class:`BufferedReply`."""
        session = self.client
        if not isinstance(session, ClientSession):
            session = self.client = self.get_client()
        if not buffered:
            call = session.request(method=method, url=url, headers=headers, data=content, allow_redirects=False,
                                   auto_decompress=False, compress=False, timeout=timeout)
            with httpx_errors():
                response = await call.__aenter__()
            return httpx.Response(status_code=response.status, headers=response.raw_headers,
                                  stream=_ResponseStream(response))
        try:  # (not httpx_errors(): a generator context manager per call costs more than the rest)
            if _SESSION_REQUEST:
                # What ``async with session.request(...) as response`` does, without its context
                # manager: aiohttp builds that one through a subscripted generic alias, which raises
                # and catches an AttributeError per call, and it adds two coroutines (~3 us a call).
                response = await session._request(method, url, headers=headers, data=content, allow_redirects=False,
                                                  auto_decompress=False, compress=False, timeout=timeout)
                try:
                    body = await response.read()
                finally:
                    response.release()
                    await response.wait_for_close()
            else:
                async with session.request(method=method, url=url, headers=headers, data=content,
                                           allow_redirects=False, auto_decompress=False, compress=False,
                                           timeout=timeout) as response:
                    body = await response.read()
        except Exception as exc:
            _reraise_as_httpx(exc)
        # Only the headers the router reads: providers send dozens (rate limits, tracing) and
        # httpx normalises every one it is given.
        headers = []
        encoded = False
        for k, v in response.raw_headers:
            name = k.lower()
            if name in _KEPT_HEADERS:
                headers.append((k, v))
                encoded = encoded or name == b"content-encoding"
        if light and not encoded:
            return BufferedReply(response.status, headers, body)
        return _buffered_response(response.status, headers, body, None)


_SESSION_REQUEST = callable(getattr(ClientSession, "_request", None))
"""Whether ``ClientSession`` has ``_request``, the coroutine behind its ``request`` (a private name,
used when it is there; see :meth:`ProviderTransport.exchange`)."""


class BufferedReply:
    """An upstream reply read whole and not content-encoded, with what the router reads of one, under
    ``httpx.Response``'s names: ``status_code``, ``content`` and ``headers`` (an ``httpx.Headers``
    built on first use: replies that succeed are never asked)."""

    __slots__ = ("_headers", "_raw", "content", "status_code")

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status_code
        self.content = content
        self._raw = raw_headers
        self._headers: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        """The reply's headers (those the router reads; see :data:`_KEPT_HEADERS`)."""
        if self._headers is None:
            self._headers = httpx.Headers(self._raw)
        return self._headers


@functools.lru_cache(maxsize=256)
def client_timeout(connect: float | None, read: float | None, pool: float | None) -> ClientTimeout:
    """aiohttp's timeouts for httpx's ``connect``/``read``/``pool`` (one shared object per combination)."""
    return ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


class _ResponseStream(httpx.AsyncByteStream):
    """A streamed aiohttp reply as an httpx byte stream, chunks as they arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        """Release the connection (back to the pool when the body was read to the end)."""
        with httpx_errors():
            self._response.release()


class _Chunks:
    """The chunks of a streamed aiohttp reply as they arrive, errors mapped as :func:`httpx_errors`
    maps them: what ``aiter_bytes()`` gives for a reply without a content encoding, without httpx's
    three generator layers, chunkers and identity decoder per chunk."""

    __slots__ = ("_read",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._read = response.content.readany

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._read()
        except Exception as exc:
            _reraise_as_httpx(exc)
        if not chunk:
            raise StopAsyncIteration
        return chunk


def iter_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """``response.aiter_bytes()``, straight from aiohttp for a reply :class:`ProviderTransport`
    streams without a content encoding (httpx decodes the others)."""
    stream = response.stream
    if type(stream) is _ResponseStream and "content-encoding" not in response.headers:
        return _Chunks(stream._response)
    return response.aiter_bytes()


def _buffered_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                       request: httpx.Request | None) -> httpx.Response:
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


def post(client: httpx.AsyncClient, url: httpx.URL, content: bytes, headers: Mapping[str, str],
         timeout: Mapping[str, float | None], *, stream: bool = False, url_text: str | None = None) -> Awaitable[Any]:
    """``POST content`` to ``url`` as :func:`send` would send an ``httpx.Request`` built from these
    arguments (``timeout``: httpx's timeout extension, ``connect``/``read``/``write``/``pool``), and
    return the awaitable reply: an ``httpx.Response`` (its body read unless ``stream``), or, when not
    streaming, possibly a :class:`BufferedReply`.

    On the default :class:`ProviderTransport` no ``httpx.Request`` is built (about 10 µs per call,
    most of httpx's remaining cost here), the response has no ``request``, and a reply read whole is
    not wrapped in an ``httpx.Response`` unless it needs decoding; any other transport (respx's mock, a
    test's override) gets the request exactly as :func:`send` would. ``url_text``: ``str(url)``
    when the caller has it already.
    """
    transport = client._transport_for_url(url)
    if type(transport) is ProviderTransport:
        # Read whole (buffered) replies are complete when exchange() returns: nothing to read or close.
        return transport.exchange(
            "POST", url_text or str(url), headers, content,
            client_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")), buffered=not stream,
            light=True)
    request = httpx.Request("POST", url, content=content, headers=headers, extensions={"timeout": timeout})
    return send(client, request, stream=stream)
