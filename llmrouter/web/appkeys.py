"""The application's typed state keys (``app[PIPELINE]`` and friends), shared by every web module."""

from __future__ import annotations

from aiohttp import web

from llmrouter.config import Config
from llmrouter.engine.pipeline import Pipeline
from llmrouter.observe.events import EventBus
from llmrouter.upstream.discovery import ModelDiscovery
from llmrouter.upstream.reliability import Reliability

CONFIG = web.AppKey("config", Config)
PIPELINE = web.AppKey("pipeline", Pipeline)
BUS = web.AppKey("bus", EventBus)
API_KEY = web.AppKey("api_key", str)
DISCOVERY = web.AppKey("discovery", ModelDiscovery)
RELIABILITY = web.AppKey("reliability", Reliability)
