"""Wire formats: conversion between each API's JSON and the canonical models.

``CLIENT_FORMATS`` are the formats clients may speak to the router; ``UPSTREAM_FORMATS`` the
formats the router can speak to providers.
"""

from __future__ import annotations

from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.base import ClientFormat, StreamDecoder, StreamRenderer, UpstreamFormat
from llmrouter.formats.ollama import OllamaFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.formats.responses import ResponsesFormat

CLIENT_FORMATS: dict[str, ClientFormat] = {
    "openai": OpenAIFormat(),
    "anthropic": AnthropicFormat(),
    "openai-responses": ResponsesFormat(),
}
UPSTREAM_FORMATS: dict[str, UpstreamFormat] = {
    "openai": CLIENT_FORMATS["openai"],  # type: ignore[dict-item]
    "anthropic": CLIENT_FORMATS["anthropic"],  # type: ignore[dict-item]
    "ollama": OllamaFormat(),
    "openai-responses": CLIENT_FORMATS["openai-responses"],  # type: ignore[dict-item]
}

__all__ = ["CLIENT_FORMATS", "UPSTREAM_FORMATS", "ClientFormat", "StreamDecoder", "StreamRenderer", "UpstreamFormat"]
