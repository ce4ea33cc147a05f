"""The aiohttp application: app factory, routes, auth, body limits and error rendering."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
from aiohttp import web

from llmrouter.config import Config, ConfigError
from llmrouter.context import Context
from llmrouter.discovery import ModelDiscovery
from llmrouter.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProviderError,
    RouterError,
)
from llmrouter.events import EventBus
from llmrouter.formats import CLIENT_FORMATS, ClientFormat
from llmrouter.formats.base import StreamRenderer
from llmrouter.jsonutil import dumps, loads
from llmrouter.models import ResponseAccumulator, StreamError
from llmrouter.pipeline import Pipeline
from llmrouter.plugins import PluginRegistry, load_entry_point_plugins
from llmrouter.providers import build_providers
from llmrouter.reliability import Reliability
from llmrouter.requestlog import RequestLog
from llmrouter.upstream import new_http_client

log = logging.getLogger("llmrouter.server")

CONFIG = web.AppKey("config", Config)
PIPELINE = web.AppKey("pipeline", Pipeline)
BUS = web.AppKey("bus", EventBus)
API_KEY = web.AppKey("api_key", str)
DISCOVERY = web.AppKey("discovery", ModelDiscovery)
RELIABILITY = web.AppKey("reliability", Reliability)

KEEPALIVE_S = 15.0
"""Seconds of client-side silence on a stream before a keep-alive is sent."""
DISCONNECT_POLL_S = 1.0
"""How often a stream waiting on a silent upstream checks whether its client has gone."""
_OPENAI = CLIENT_FORMATS["openai"]
_ANTHROPIC = CLIENT_FORMATS["anthropic"]
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})
_OPEN_PATHS = frozenset({"/health", "/"})
_JSON_OR_UNDECLARED = frozenset({"application/json", "application/octet-stream"})


def new_request_id() -> str:
    """A 32-hex-digit request id. Ids only need to be unique, not unguessable, so this avoids a
    ``getrandom`` system call per request."""
    return f"{random.getrandbits(128):032x}"


def format_for_path(path: str) -> ClientFormat:
    """The client format whose error shape fits ``path`` (Anthropic for /v1/messages)."""
    return _ANTHROPIC if path.startswith("/v1/messages") else _OPENAI


def error_response(fmt: ClientFormat, error: RouterError, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error reply in ``fmt``'s own shape."""
    return web.Response(status=error.status, body=dumps(fmt.render_error(error)),
                        content_type="application/json", headers=headers)


def resolve_api_key(config: Config, environ: Mapping[str, str]) -> str | None:
    """The inbound API key, or None when auth is off.

    :raises ConfigError: when ``api_key_env`` names an unset variable, or a non-loopback bind
        has no key and ``allow_unauthenticated`` is not set.
    """
    server = config.server
    if server.api_key_env:
        key = environ.get(server.api_key_env)
        if not key:
            raise ConfigError(f"{config.source}: [server] key 'api_key_env': environment variable "
                              f"{server.api_key_env} is not set")
        return key
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine; names other
    than ``localhost``, the empty host and wildcard addresses count as exposed."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_exposure(config: Config, host: str, api_key: str | None) -> None:
    """Refuse a non-loopback bind without inbound auth unless explicitly allowed."""
    if not is_loopback(host) and api_key is None and not config.server.allow_unauthenticated:
        raise ConfigError(
            f"{config.source}: [server] key 'host': binding {host!r} exposes the router; set api_key_env "
            "(or allow_unauthenticated = true to accept the risk)"
        )


def _presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key") or request.query.get("api_key")


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    """Require the inbound key on every route except ``/health`` and ``/``."""
    key = request.app.get(API_KEY)
    if key and request.path not in _OPEN_PATHS:
        presented = _presented_key(request)
        if presented is None or not hmac.compare_digest(presented.encode(), key.encode()):
            message = "missing API key" if presented is None else "invalid API key"
            headers = None
            if request.method == "POST" and request.path in _CHAT_PATHS:
                # Refused chat requests are exchanges too: they get events and a log line (no body).
                pipeline, request_id = request.app[PIPELINE], new_request_id()
                pipeline.publish_start(request_id, None, request.path)
                pipeline.record(ctx=None, request_id=request_id, endpoint=request.path,
                                started=time.perf_counter(), status=401, error=message)
                headers = {"X-Router-Request-Id": request_id}
            return error_response(format_for_path(request.path), AuthenticationFailed(message), headers)
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Render aiohttp's own HTTP errors (404, 405) in the client's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/dashboard"):
            raise
        fmt = format_for_path(request.path)
        if exc.status == 404:
            err: RouterError = NotFound(f"no route for {request.method} {request.path}")
        else:
            err = RouterError(f"{exc.reason} for {request.method} {request.path}", status=exc.status,
                              kind="invalid_request_error")
        return error_response(fmt, err)


async def read_json(request: web.Request, limit_bytes: int) -> Any:
    """Read and decode the body, enforcing the size limit.

    :raises PayloadTooLarge: over the limit. :raises InvalidRequest: empty or invalid JSON.
    """
    if request.content_length is not None and request.content_length > limit_bytes:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds the limit of {limit_bytes} bytes")
    try:
        # The app's client_max_size is limit_bytes + 1, so aiohttp stops reading past the limit.
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit_bytes} bytes") from None
    if len(body) > limit_bytes:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit_bytes} bytes")
    if not body.strip():
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
    if declared is None or not declared.strip():
        return
    mime = request.content_type
    if mime in _JSON_OR_UNDECLARED or (mime.startswith("application/") and mime.endswith("+json")):
        return
    raise UnsupportedMediaType(f"unsupported content type {mime!r}: send the request body as application/json")


def check_limits(body: Any, max_depth: int, max_messages: int) -> None:
    """Refuse bodies nested deeper than ``max_depth`` or with more than ``max_messages`` messages.

    :raises InvalidRequest: naming the limit.
    """
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and len(messages) > max_messages:
            raise InvalidRequest(f"messages: {len(messages)} messages exceed the limit of {max_messages}")
    if json_depth_exceeds(body, max_depth):
        raise InvalidRequest(f"request body is nested deeper than the limit of {max_depth} levels")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether decoded JSON ``value`` nests containers more than ``limit`` levels deep (a scalar or
    an empty object is depth 1). Walks level by level, looking only at containers."""
    if type(value) is not dict and type(value) is not list:
        return limit < 1
    level: list[Any] = [value]
    depth = 1
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


def _record(pipeline: Pipeline, ctx: Context, started: float, status: int, error: str | None) -> None:
    """Log a request whose context exists, once (marks it so a cancellation does not log it again)."""
    ctx.state["_recorded"] = True
    pipeline.record(ctx=ctx, request_id=ctx.request_id, endpoint=ctx.endpoint, started=started,
                    status=status, error=error)


def _error_headers(request_id: str, ctx: Context | None, error: RouterError) -> dict[str, str]:
    headers = _router_headers(request_id, ctx)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers


def _router_headers(request_id: str, ctx: Context | None) -> dict[str, str]:
    headers = {"X-Router-Request-Id": request_id}
    if ctx is not None:
        if ctx.provider:
            headers["X-Router-Provider"] = ctx.provider
        model = ctx.sent_model or (ctx.response.model if ctx.response is not None else None)
        if model:
            headers["X-Router-Model"] = header_safe(model)
        if ctx.request.tags:
            headers["X-Router-Request-Tags"] = header_safe(",".join(ctx.request.tags))
    return headers


def header_safe(value: str) -> str:
    """``value`` with control characters replaced by ``?``: client-chosen text (the model name) must
    not be able to break or inject response headers."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value)


def _body_model(body: Any) -> str | None:
    """The ``model`` a (possibly invalid) request body names, for events of rejected requests."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def chat_handler(fmt: ClientFormat, endpoint: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler for one chat endpoint speaking client format ``fmt``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        pipeline = request.app[PIPELINE]
        config = request.app[CONFIG]
        request_id = new_request_id()
        started = time.perf_counter()
        ctx: Context | None = None
        body: Any = None
        try:
            try:
                check_content_type(request)
                body = await read_json(request, int(config.server.max_body_mb * 1024 * 1024))
                check_limits(body, config.server.max_json_depth, config.server.max_messages)
                chat_request = fmt.parse_request(body, request.headers)
            except Exception:  # a rejected request still gets its start (and complete) event
                pipeline.publish_start(request_id, _body_model(body), endpoint)
                raise
            pipeline.publish_start(request_id, chat_request.model, endpoint)
            ctx = pipeline.new_context(chat_request, request_id, endpoint)
            await pipeline.prepare(ctx)
            if chat_request.stream:
                return await _stream(request, fmt, pipeline, ctx, started)
            response = await pipeline.complete(ctx)
        except RouterError as exc:
            if ctx is not None:
                await pipeline.fail(ctx, exc.message)
            pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started,
                            status=exc.status, error=exc.message, request_model=_body_model(body))
            return error_response(fmt, exc, _error_headers(request_id, ctx, exc))
        except asyncio.CancelledError:
            # The client went away or shutdown's grace ran out: the request still gets its log line.
            if ctx is not None and "_recorded" not in ctx.state:
                _record(pipeline, ctx, started, 499, "request cancelled")
            raise
        except Exception as exc:  # a bug must not take the server down or leave the client hanging
            log.exception("unexpected error handling request %s", request_id)
            err = RouterError(f"internal error: {type(exc).__name__}: {exc}")
            pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started,
                            status=500, error=err.message, request_model=_body_model(body))
            return error_response(fmt, err, _router_headers(request_id, ctx))
        pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started, status=200, error=None)
        return web.Response(body=dumps(fmt.render_response(response, ctx.request)), content_type="application/json",
                            headers=_router_headers(request_id, ctx))

    return handle


async def _stream(request: web.Request, fmt: ClientFormat, pipeline: Pipeline, ctx: Context,
                  started: float) -> web.StreamResponse:
    """Relay a streamed reply; errors before the first byte propagate as ordinary error replies."""
    answered_by_plugin = ctx.response is not None
    if answered_by_plugin:
        await pipeline.finish(ctx)
    events = await pipeline.open_stream(ctx)
    renderer = fmt.stream_renderer(ctx.request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
        **_router_headers(ctx.request_id, ctx),
    })
    accumulator = ResponseAccumulator()
    error: str | None = None
    status = 200
    iterator = events.__aiter__()
    pending: asyncio.Future[Any] | None = None
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        # Keep-alives follow the client's silence, not the upstream's: a renderer may hold output
        # back (Anthropic tool arguments) while the upstream is busy.
        last_write = loop.time()
        while True:
            pending = asyncio.ensure_future(iterator.__anext__())
            while not pending.done():
                # aiohttp does not cancel handlers when clients leave (unless handler_cancellation is
                # on), so a silent upstream would otherwise be held until the next write fails.
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client disconnected")
                idle = loop.time() - last_write
                if idle >= KEEPALIVE_S:
                    await response.write(renderer.keepalive())
                    last_write = loop.time()
                else:
                    await asyncio.wait({pending}, timeout=min(KEEPALIVE_S - idle, DISCONNECT_POLL_S))
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            accumulator.feed(event)
            if isinstance(event, StreamError):
                err = ProviderError(ctx.provider or "?", f"provider '{ctx.provider}' stream error: {event.message}")
                err.kind = event.error_type  # e.g. overloaded_error: clients back off as they would upstream
                await response.write(renderer.render_error(err))
                error, status = err.message, err.status
                break
            data = renderer.render(event)
            if data:
                await response.write(data)
                last_write = loop.time()
    except RouterError as exc:
        error, status = exc.message, exc.status
        await _write_error(response, renderer, exc)
    except (ConnectionError, asyncio.CancelledError) as exc:
        error, status = "client disconnected", 499
        if isinstance(exc, asyncio.CancelledError):
            _finish_after_disconnect(pipeline, ctx, accumulator, answered_by_plugin, started, iterator, pending)
            raise
    except Exception as exc:  # a bug mid-stream: the client still gets an error event and the log a line
        log.exception("unexpected error streaming request %s", ctx.request_id)
        internal = RouterError(f"internal error: {type(exc).__name__}: {exc}")
        error, status = internal.message, internal.status
        await _write_error(response, renderer, internal)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        await _close_iterator(iterator)
    if not answered_by_plugin:
        ctx.response = accumulator.result()
        ctx.error = error
        await pipeline.finish(ctx)
    _record(pipeline, ctx, started, status, error)
    try:
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _write_error(response: web.StreamResponse, renderer: StreamRenderer, error: RouterError) -> None:
    """Send the client an error event in its format, unless it is already gone."""
    try:
        await response.write(renderer.render_error(error))
    except (ConnectionError, RuntimeError):
        pass


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken upstream must never mask the real outcome
            log.debug("error closing upstream stream", exc_info=True)


def _finish_after_disconnect(pipeline: Pipeline, ctx: Context, accumulator: ResponseAccumulator,
                             answered_by_plugin: bool, started: float, iterator: AsyncIterator[Any],
                             pending: Any) -> None:
    """The handler was cancelled: log at once (the process may be shutting down), close upstream in a
    task of its own."""
    if not answered_by_plugin:
        ctx.response = accumulator.result()
    _record(pipeline, ctx, started, 499, "client disconnected")

    async def finish() -> None:
        if pending is not None and not pending.done():
            pending.cancel()
        await _close_iterator(iterator)

    task = asyncio.get_running_loop().create_task(finish())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[None]] = set()


async def models_handler(request: web.Request) -> web.Response:
    """``GET /v1/models``: every model the config can route, in OpenAI or Anthropic list shape."""
    pipeline = request.app[PIPELINE]
    config = request.app[CONFIG]
    owners: dict[str, str] = {}
    for name, info in pipeline.provider_infos().items():
        for model in info.models:
            owners.setdefault(model, name)
    for rule in config.routers:
        provider = rule.get("provider")
        if isinstance(rule.get("rewrite_model"), str):
            owners.setdefault(rule["rewrite_model"], provider or "router")
        for cand in rule.get("candidates") or []:
            if isinstance(cand, dict) and isinstance(cand.get("model"), str):
                owners.setdefault(cand["model"], cand.get("provider", "router"))
    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"} for m in owners]
        body: dict[str, Any] = {"data": data, "has_more": False,
                                "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list",
                "data": [{"id": m, "object": "model", "created": 0, "owned_by": p} for m, p in owners.items()]}
    return web.json_response(body, dumps=lambda v: dumps(v).decode())


async def health_handler(request: web.Request) -> web.Response:
    """``GET /health``: liveness plus per-provider status."""
    pipeline = request.app[PIPELINE]
    circuits = request.app[RELIABILITY].snapshot()
    providers = {name: {"format": info.format, "healthy": info.healthy, "models": list(info.models),
                        "circuit": circuits.get(name)}
                 for name, info in pipeline.provider_infos().items()}
    return web.json_response({"status": "ok", "in_flight": pipeline.in_flight, "providers": providers})


async def root_handler(request: web.Request) -> web.Response:
    """``GET``/``HEAD /``: a liveness answer (Claude Code probes ``HEAD /`` first)."""
    return web.json_response({"name": "llmrouter", "status": "ok"})


def create_app(config: Config, *, registry: PluginRegistry | None = None, environ: Mapping[str, str] | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> web.Application:
    """Build the application for ``config``.

    :param registry: plugins to use (default: everything in the ``llmrouter`` entry point group).
    :param environ: where to read API-key variables (default: ``os.environ``).
    :param transport: upstream transport override (default: the aiohttp-backed httpx transport).
    :raises ConfigError: on any configuration problem, with a message naming file, table and key.
    """
    env = dict(os.environ if environ is None else environ)
    registry = registry or load_entry_point_plugins()
    providers = build_providers(config, env)
    api_key = resolve_api_key(config, env)
    bus = EventBus()
    discovery = ModelDiscovery()
    reliability = Reliability(config, providers, bus)
    pipeline = Pipeline(config, registry, providers, bus, discovered=discovery.models,
                        provider_call=reliability.complete, stream_call=reliability.stream, gate=reliability)

    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=int(config.server.max_body_mb * 1024 * 1024) + 1)
    app[CONFIG] = config
    app[PIPELINE] = pipeline
    app[BUS] = bus
    app[DISCOVERY] = discovery
    app[RELIABILITY] = reliability
    if api_key:
        app[API_KEY] = api_key

    async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
        pipeline.http = new_http_client(transport)
        targets = [(p.config, p.api_key) for p in providers.values() if p.config.format != "echo"]
        discovery.start(pipeline.http, targets)
        yield
        await discovery.stop()
        await pipeline.http.aclose()

    async def requestlog_ctx(app: web.Application) -> AsyncIterator[None]:
        if config.logging.enabled:
            secrets = [p.api_key for p in providers.values()] + [api_key]
            pipeline.request_log = RequestLog(config.logging.path, secrets=secrets)
        yield
        if pipeline.request_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, pipeline.request_log.close)

    app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(requestlog_ctx)

    app.router.add_post("/v1/chat/completions", chat_handler(_OPENAI, "/v1/chat/completions"))
    app.router.add_post("/v1/messages", chat_handler(_ANTHROPIC, "/v1/messages"))
    app.router.add_get("/v1/models", models_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/", root_handler)
    if config.server.dashboard:
        from llmrouter.dashboard import add_dashboard_routes

        add_dashboard_routes(app)
    return app
