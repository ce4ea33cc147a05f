"""The aiohttp application factory: state, cleanup contexts and routes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from aiohttp import web

from llmrouter.config import Config, ConfigError
from llmrouter.engine.registry import PluginRegistry, load_entry_point_plugins
from llmrouter.formats import CLIENT_FORMATS, ClientFormat
from llmrouter.formats.responses import ResponsesFormat
from llmrouter.keys.auth import KeyRing
from llmrouter.keys.limiter import KeyLimiter
from llmrouter.keys.setup import open_store
from llmrouter.keys.web import spend_handler
from llmrouter.observe.events import EventBus
from llmrouter.observe.metrics import Metrics, multiprocess_dir
from llmrouter.observe.requestlog import RequestLog
from llmrouter.upstream.client import new_http_client
from llmrouter.web.appkeys import (
    API_KEY,
    BUS,
    CLUSTER,
    CONFIG,
    DISCOVERY,
    KEYRING,
    LIMITER,
    LIVE,
    METRICS,
    OPEN_PATHS,
    PIPELINE,
    RELIABILITY,
    TRACING,
)
from llmrouter.web.count_tokens import ENDPOINT as COUNT_TOKENS_ENDPOINT
from llmrouter.web.count_tokens import count_tokens_handler
from llmrouter.web.handlers import (
    chat_handler,
    health_handler,
    metrics_handler,
    model_handler,
    models_handler,
    reload_handler,
    root_handler,
)
from llmrouter.web.middleware import (
    OPEN_BY_DEFAULT,
    check_exposure,
    inbound_middleware,
    resolve_api_key,
)
from llmrouter.web.reload import Builder, Live
from llmrouter.web.response_store import MemoryResponseStore

__all__ = ["API_KEY", "BUS", "CLUSTER", "CONFIG", "DISCOVERY", "KEYRING", "LIMITER", "LIVE", "METRICS", "PIPELINE",
           "RELIABILITY", "TRACING", "check_exposure", "create_app", "load_tracing", "resolve_api_key"]


def load_tracing(config: Config) -> Any:
    """The app's :class:`~llmrouter.observe.tracing.Tracing`.

    :raises ConfigError: when OpenTelemetry (the ``llmrouter[otel]`` extra) is not installed.
    """
    try:
        from llmrouter.observe.tracing import Tracing
    except ImportError as exc:
        raise ConfigError(f"{config.source}: [tracing] key 'enabled': OpenTelemetry is not installed "
                          f"({exc}); install it with: pip install 'llmrouter[otel]'") from None
    return Tracing(config.tracing)


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
    tracing: Any = load_tracing(config) if config.tracing.enabled else None
    cluster = None
    if config.cluster.redis_url:  # redis is imported only for a cluster
        from llmrouter.cluster.wiring import Cluster

        cluster = Cluster(config.cluster)
    bus = cluster.bus if cluster is not None else EventBus()
    builder = Builder(registry, env, bus, cluster.models if cluster is not None else None, tracing=tracing)
    generation = builder.build(config)
    live = Live(generation, builder)
    pipeline, discovery, reliability = generation.pipeline, generation.discovery, builder.reliability
    assert reliability is not None
    providers = pipeline.providers
    api_key = resolve_api_key(config, env)
    keyring = KeyRing.from_config(config, env, api_key)
    if cluster is not None:
        cluster.bind(live)

    app = web.Application(middlewares=[inbound_middleware],
                          client_max_size=int(config.server.max_body_mb * 1024 * 1024) + 1)
    app[CONFIG] = config
    app[PIPELINE] = pipeline
    app[BUS] = bus
    app[DISCOVERY] = discovery
    app[RELIABILITY] = reliability
    app[LIVE] = live
    if cluster is not None:
        app[CLUSTER] = cluster
    if api_key:
        app[API_KEY] = api_key
    app[KEYRING] = keyring
    limiter = KeyLimiter(keyring, None, providers)
    app[LIMITER] = limiter
    pipeline.keys = limiter if keyring.virtual else None

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        limiter.store = open_store(config)
        yield
        await limiter.close()

    open_paths = set(OPEN_BY_DEFAULT)
    if config.metrics.enabled:
        metrics = Metrics(multiprocess_dir())
        app[METRICS] = pipeline.metrics = reliability.metrics = metrics
        if config.metrics.public:
            open_paths.add("/metrics")
    app[OPEN_PATHS] = frozenset(open_paths)

    async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
        pipeline.http = new_http_client(transport)
        if cluster is not None:
            cluster.start()
        targets = [(p.config, p.api_key) for p in providers.values() if not p.format.offline]
        discovery.start(pipeline.http, targets)
        yield
        await live.current.discovery.stop()
        if cluster is not None:
            await cluster.stop()
        await pipeline.http.aclose()

    async def requestlog_ctx(app: web.Application) -> AsyncIterator[None]:
        if config.logging.enabled:
            secrets = [p.api_key for p in providers.values()] + [api_key, *keyring.secrets]
            settings = config.logging
            pipeline.request_log = RequestLog(settings.path, secrets=secrets, max_mb=settings.max_mb,
                                              keep=settings.keep, compress=settings.compress,
                                              window_mb=settings.window_mb)
        yield
        if pipeline.request_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, pipeline.request_log.close)

    app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(requestlog_ctx)
    app.cleanup_ctx.append(keys_ctx)
    if tracing is not None:
        app[TRACING] = tracing

        async def tracing_ctx(app: web.Application) -> AsyncIterator[None]:
            yield
            # Flushing exports over the network and blocks: off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)

        app.cleanup_ctx.insert(0, tracing_ctx)  # cleaned up last, after the last request's spans

    app.router.add_post("/v1/chat/completions", chat_handler(CLIENT_FORMATS["openai"], "/v1/chat/completions"))
    app.router.add_post("/v1/messages", chat_handler(CLIENT_FORMATS["anthropic"], "/v1/messages"))
    app.router.add_post(COUNT_TOKENS_ENDPOINT, count_tokens_handler)
    app.router.add_post("/v1/responses", chat_handler(responses_format(config), "/v1/responses"))
    app.router.add_get("/v1/models", models_handler)
    app.router.add_get("/v1/models/{model:.+}", model_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/", root_handler)
    app.router.add_get("/api/hello", root_handler)
    app.router.add_get("/admin/spend", spend_handler)
    if config.metrics.enabled:
        app.router.add_get("/metrics", metrics_handler)
    app.router.add_post("/admin/reload", reload_handler)
    if config.server.dashboard:
        from llmrouter.web.dashboard import add_dashboard_routes

        add_dashboard_routes(app)
    add_plugin_routes(app, registry)
    return app


def responses_format(config: Config) -> ClientFormat:
    """The ``/v1/responses`` client format, with a conversation store when ``[responses] store``."""
    if not config.responses.store:
        return CLIENT_FORMATS["openai-responses"]
    return ResponsesFormat(store=MemoryResponseStore(config.responses.max_stored))


def add_plugin_routes(app: web.Application, registry: PluginRegistry) -> None:
    """Add the routes of every loaded plugin's ``register_routes`` (behind the same middlewares).

    :raises ConfigError: when a plugin's hook fails or a route clashes with an existing one.
    """
    for plugin_id in sorted(registry.records):
        function = registry.impl(plugin_id, "register_routes")
        if function is None:
            continue
        try:
            routes = list(function() or ())
            taken = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
            for route in routes:
                key = (getattr(route, "method", None), getattr(route, "path", None))
                if key in taken:
                    raise ValueError(f"route {key[0]} {key[1]} already exists")
            app.router.add_routes(routes)
        except Exception as exc:
            raise ConfigError(f"plugin {plugin_id!r}: register_routes failed: {type(exc).__name__}: {exc}") from None
