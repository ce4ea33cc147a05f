"""The provider-format interface: what a plugin implements to add ``format = "<name>"``.

The router owns the I/O: connections, timeouts, retries, circuit breakers, streaming transport,
error mapping and secret redaction. A :class:`ProviderFormat` only converts: a canonical
:class:`~llmrouter.models.ChatRequest` to the URL, headers and JSON body of one HTTP call, a JSON
reply to a :class:`~llmrouter.models.ChatResponse`, and streamed bytes to canonical stream events
(through a :class:`~llmrouter.formats.base.StreamDecoder`). Formats are registered with the
``register_provider_formats`` hook (the built-ins through the same hook, from
``llmrouter_plugins.formats``); see docs/writing-a-provider-format.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter.formats.base import UpstreamFormat, response_to_events
from llmrouter.models import ChatRequest, ChatResponse, StreamEvent


class ProviderFormat(UpstreamFormat):
    """A wire format the router can speak to providers.

    Subclasses set :attr:`name` and implement ``build_request``, ``parse_response`` and
    ``stream_decoder`` (from :class:`~llmrouter.formats.base.UpstreamFormat`); the other methods
    have defaults suiting OpenAI-like APIs: ``POST {base_url}{path}``, a bearer token, and
    ``"stream": true|false`` in the body.
    """

    name: str = ""
    path: str = ""
    """Appended to the provider's ``base_url`` by the default :meth:`url`."""
    requires_base_url: bool = True
    """Whether ``[[providers]]`` entries of this format must set ``base_url``."""
    offline: bool = False
    """True for formats that answer without any I/O (``echo``); then :meth:`offline_response` is used."""

    def url(self, base_url: str, model: str, *, stream: bool) -> str:
        """The URL to POST to (``base_url`` has no trailing slash)."""
        return base_url + self.path

    def body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        """The JSON body to send: :meth:`build_request` plus ``"stream"``."""
        body = self.build_request(request, model)
        body["stream"] = stream
        return body

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers carrying the provider's API key (default: ``Authorization: Bearer <key>``)."""
        return {"authorization": f"Bearer {api_key}"}

    def static_headers(self) -> dict[str, str]:
        """Headers sent on every call besides ``content-type`` and the key (e.g. an API version)."""
        return {}

    def request_headers(self, request: ChatRequest, configured: Mapping[str, str]) -> dict[str, str]:
        """Extra headers for this one request (e.g. client betas to forward); ``configured`` are the
        provider's own ``headers``, which must win. Default: none. Called on every request: keep it cheap."""
        return {}

    def offline_response(self, request: ChatRequest, model: str) -> ChatResponse:
        """The answer of an :attr:`offline` format (never called for formats that do I/O)."""
        raise NotImplementedError(f"format {self.name!r} is not offline")

    def offline_stream(self, request: ChatRequest, model: str) -> list[StreamEvent]:
        """The streamed answer of an :attr:`offline` format (default: :meth:`offline_response` as events)."""
        return response_to_events(self.offline_response(request, model))

    def models_url(self, base_url: str) -> str | None:
        """Where model discovery lists the provider's models (GET), or None to use only config ``models``."""
        return None

    def parse_models(self, body: Any) -> list[str]:
        """Model names from the JSON body served at :meth:`models_url`."""
        return []
