"""The aiohttp application factory: state, cleanup contexts and routes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping

import httpx
from aiohttp import web

from llmrouter.config import Config
from llmrouter.engine.pipeline import Pipeline
from llmrouter.engine.registry import PluginRegistry, load_entry_point_plugins
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.observe.events import EventBus
from llmrouter.observe.requestlog import RequestLog
from llmrouter.upstream.client import new_http_client
from llmrouter.upstream.discovery import ModelDiscovery
from llmrouter.upstream.providers import build_providers
from llmrouter.upstream.reliability import Reliability
from llmrouter.web.appkeys import API_KEY, BUS, CONFIG, DISCOVERY, PIPELINE, RELIABILITY
from llmrouter.web.count_tokens import ENDPOINT as COUNT_TOKENS_ENDPOINT
from llmrouter.web.count_tokens import count_tokens_handler
from llmrouter.web.handlers import chat_handler, health_handler, models_handler, root_handler
from llmrouter.web.middleware import auth_middleware, check_exposure, error_middleware, resolve_api_key

__all__ = ["API_KEY", "BUS", "CONFIG", "DISCOVERY", "PIPELINE", "RELIABILITY", "check_exposure", "create_app",
           "resolve_api_key"]


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
            settings = config.logging
            pipeline.request_log = RequestLog(settings.path, secrets=secrets, max_mb=settings.max_mb,
                                              keep=settings.keep, compress=settings.compress,
                                              window_mb=settings.window_mb)
        yield
        if pipeline.request_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, pipeline.request_log.close)

    app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(requestlog_ctx)

    app.router.add_post("/v1/chat/completions", chat_handler(CLIENT_FORMATS["openai"], "/v1/chat/completions"))
    app.router.add_post("/v1/messages", chat_handler(CLIENT_FORMATS["anthropic"], "/v1/messages"))
    app.router.add_post(COUNT_TOKENS_ENDPOINT, count_tokens_handler)
    app.router.add_get("/v1/models", models_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/", root_handler)
    app.router.add_get("/api/hello", root_handler)
    if config.server.dashboard:
        from llmrouter.web.dashboard import add_dashboard_routes

        add_dashboard_routes(app)
    return app
