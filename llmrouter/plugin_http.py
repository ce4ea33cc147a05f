"""What a plugin's HTTP handlers (added through ``register_routes``) may read from the running router.

These accessors are the public, stable way in; the app keys behind them are internals::

    from llmrouter.plugin_http import provider_infos

    async def handler(request: web.Request) -> web.Response:
        names = [name for name, info in provider_infos(request).items() if info.healthy]
        return web.json_response({"healthy": names})
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from llmrouter.config import Config
from llmrouter.context import ProviderInfo
from llmrouter.web.appkeys import LIVE

__all__ = ["provider_infos", "router_config"]


def provider_infos(request: web.Request) -> Mapping[str, ProviderInfo]:
    """The loaded providers as hooks see them (``ctx.providers``): read-only, in config order, from
    the config currently loaded (after a reload, the new one)."""
    return request.app[LIVE].current.pipeline.provider_infos()


def router_config(request: web.Request) -> Config:
    """The router's validated configuration as currently loaded (treat it as read-only)."""
    return request.app[LIVE].current.config
