"""The application's typed state keys (``app[PIPELINE]`` and friends), shared by every web module."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmrouter.config import Config
from llmrouter.engine.pipeline import Pipeline
from llmrouter.keys.auth import KeyRing, Principal
from llmrouter.keys.limiter import KeyLimiter
from llmrouter.observe.events import EventBus
from llmrouter.observe.metrics import Metrics
from llmrouter.upstream.discovery import ModelDiscovery
from llmrouter.upstream.reliability import Reliability
from llmrouter.web.reload import Live

CONFIG = web.AppKey("config", Config)
PIPELINE = web.AppKey("pipeline", Pipeline)
BUS = web.AppKey("bus", EventBus)
API_KEY = web.AppKey("api_key", str)
DISCOVERY = web.AppKey("discovery", ModelDiscovery)
RELIABILITY = web.AppKey("reliability", Reliability)
KEYRING = web.AppKey("keyring", KeyRing)
LIMITER = web.AppKey("limiter", KeyLimiter)
PRINCIPAL: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "llmrouter.principal"
"""Request key under which the auth middleware leaves the :class:`~llmrouter.keys.auth.Principal`."""
METRICS = web.AppKey("metrics", Metrics)
TRACING = web.AppKey("tracing", object)
"""The app's :class:`llmrouter.observe.tracing.Tracing` when ``[tracing] enabled = true``."""
OPEN_PATHS = web.AppKey("open_paths", frozenset)
"""Paths served without the inbound key."""
LIVE = web.AppKey("live", Live)
"""The current config generation: handlers read ``app[LIVE].current`` (``app[CONFIG]`` and
``app[PIPELINE]`` are the generation the app started with)."""
CLUSTER = web.AppKey("cluster", object)
"""The :class:`~llmrouter.cluster.wiring.Cluster`, when ``[cluster] redis_url`` is set."""
