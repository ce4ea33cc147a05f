"""The benchmark's floor: the least a JSON-aware LLM proxy can do.

A bare aiohttp server that parses each request body, re-encodes it with orjson, forwards it to the
upstream with one shared aiohttp ClientSession, and returns the reply; streamed replies are relayed
chunk by chunk as they arrive. No routing, no validation, no logging: whatever the router costs
beyond this is the router's own overhead.

Standalone: ``python bench/floor_proxy.py --port 9102 --upstream http://127.0.0.1:9101``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

UPSTREAM_KEY = web.AppKey("upstream", str)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)

# Headers a real client sends that an upstream needs; everything else is dropped.
_FORWARDED = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta")


async def relay(request: web.Request) -> web.StreamResponse:
    """Forward one POST to the same path on the upstream and send its reply back."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return web.json_response({"error": {"message": f"invalid JSON: {exc}"}}, status=400)
    headers = {"Content-Type": "application/json"}
    for name in _FORWARDED:
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    url = request.app[UPSTREAM_KEY] + request.path_qs
    session = request.app[SESSION_KEY]
    async with session.post(url, data=orjson.dumps(body), headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not (isinstance(body, dict) and body.get("stream")) or upstream.status != 200:
            return web.Response(
                body=await upstream.read(), status=upstream.status, headers={"Content-Type": content_type}
            )
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def make_app(upstream: str) -> web.Application:
    """The floor proxy as an aiohttp application forwarding to ``upstream`` (a base URL)."""
    app = web.Application()
    app[UPSTREAM_KEY] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
            app[SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", relay)
    app.router.add_post("/v1/messages", relay)
    app.router.add_get("/health", _health)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (the router uses it too), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    parser.add_argument("--upstream", default="http://127.0.0.1:9101", help="the upstream's base URL")
    args = parser.parse_args(argv)
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
