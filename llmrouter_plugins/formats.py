"""Plugin ``formats``: the built-in provider formats ``openai``, ``openai-responses``, ``anthropic``,
``ollama`` and ``echo``.

They are registered through the ``register_provider_formats`` hook, exactly as a third-party
format is (see docs/writing-a-provider-format.md). Each class below joins a wire converter from
:mod:`llmrouter.formats` with the transport facts the router needs (path, credentials header).

This plugin needs no config table: its formats are available to every ``[[providers]]`` entry.

Example::

    [[providers]]
    name = "local"
    format = "openai"
    base_url = "http://localhost:8080/v1"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.base import StreamDecoder
from llmrouter.formats.echo import echo_response, echo_stream_events
from llmrouter.formats.ollama import OllamaFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.formats.provider import ProviderFormat
from llmrouter.formats.responses import ResponsesFormat
from llmrouter.hookspecs import hookimpl
from llmrouter.models import ChatRequest, ChatResponse, StreamEvent

ANTHROPIC_VERSION = "2023-06-01"
_FORWARDED_ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


class OpenAIProviderFormat(OpenAIFormat, ProviderFormat):
    """OpenAI Chat Completions: ``POST {base_url}/chat/completions`` with a bearer token."""

    name = "openai"
    path = "/chat/completions"


class ResponsesProviderFormat(ResponsesFormat, ProviderFormat):
    """OpenAI Responses API: ``POST {base_url}/responses`` with a bearer token."""

    name = "openai-responses"
    path = "/responses"


class AnthropicProviderFormat(AnthropicFormat, ProviderFormat):
    """Anthropic Messages: ``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``."""

    name = "anthropic"
    path = "/v1/messages"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Anthropic takes its key in ``x-api-key``."""
        return {"x-api-key": api_key}

    def static_headers(self) -> dict[str, str]:
        """The API version every call names."""
        return {"anthropic-version": ANTHROPIC_VERSION}

    def request_headers(self, request: ChatRequest, configured: Mapping[str, str]) -> dict[str, str]:
        """The version and betas an Anthropic client asked for (unless the provider config sets them)."""
        if request.source_format != "anthropic" or not request.headers:
            return {}
        return {key: request.headers[key] for key in _FORWARDED_ANTHROPIC_HEADERS
                if key in request.headers and key not in configured}


class OllamaProviderFormat(OllamaFormat, ProviderFormat):
    """Ollama's native chat API: ``POST {base_url}/api/chat``."""

    name = "ollama"
    path = "/api/chat"


class EchoFormat(ProviderFormat):
    """The offline provider: answers with the last user message, no I/O (streams one word a delta)."""

    name = "echo"
    requires_base_url = False
    offline = True

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """Not used: echo sends nothing."""
        return {}

    def parse_response(self, body: Any) -> ChatResponse:
        """Not used: echo receives nothing."""
        raise ValueError("the echo format has no wire replies")

    def stream_decoder(self) -> StreamDecoder:
        """Not used: echo streams are built from :meth:`offline_response`."""
        raise NotImplementedError("the echo format has no wire streams")

    def offline_response(self, request: ChatRequest, model: str) -> ChatResponse:
        """The last user message, with token counts estimated at four characters a token."""
        return echo_response(request, model)

    def offline_stream(self, request: ChatRequest, model: str) -> list[StreamEvent]:
        """The echo answer with one text delta per word, so streaming is visible."""
        return echo_stream_events(request, model)


BUILTIN_FORMATS: tuple[ProviderFormat, ...] = (
    OpenAIProviderFormat(), ResponsesProviderFormat(), AnthropicProviderFormat(), OllamaProviderFormat(),
    EchoFormat(),
)


@hookimpl
def register_provider_formats() -> Iterable[ProviderFormat]:
    """The built-in provider formats."""
    return BUILTIN_FORMATS
