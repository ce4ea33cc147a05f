"""The record of one exchange: the ``complete`` event and log line built from a request's context,
and the ``ctx.state`` keys the pipeline leaves for it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llmrouter.context import Context
from llmrouter.formats.passthrough import ClientBody
from llmrouter.models import ChatRequest, Usage
from llmrouter.observe.events import ParsedJSON, now_ms
from llmrouter.upstream.providers import Provider

PLUGIN_PROVIDER = "plugin"
"""``ctx.provider`` of a request a plugin answered itself."""
LOGGED_REQUEST = "_logged_request"
"""``ctx.state`` key: the canonical request as it was before any plugin ran."""
CLIENT_BODY = "_client_body"
"""``ctx.state`` key of the request's :class:`ClientBody` (openai and anthropic clients)."""
DELIVERED = "_delivered"
"""``ctx.state`` key: (reply, plugins that changed it) as the client received them, kept when late
hooks may edit ``ctx.response`` after delivery, so the log records what was delivered."""


def complete_entry(ctx: Context | None, providers: Mapping[str, Provider], *, request_id: str, endpoint: str,
                   started: float, status: int, error: str | None, request_model: str | None,
                   key: str | None) -> tuple[dict[str, Any], Usage | None]:
    """The ``complete`` event (and log line) of a request, with the reply's usage.

    ``ctx`` is None for a request refused before it had one (bad body, auth): ``request_model`` and
    ``key`` then stand in for what the context would say.
    """
    response = ctx.response if ctx is not None else None
    delivered = ctx.state.get(DELIVERED) if ctx is not None else None
    if delivered is not None:
        response = delivered[0]
    usage = response.usage if response is not None else None
    provider = providers.get(ctx.provider) if ctx is not None and ctx.provider else None
    cost = provider.cost_usd(usage, ctx.sent_model, response.model) \
        if provider is not None and usage is not None and ctx is not None and response is not None else None
    if ctx is not None and ctx.provider == PLUGIN_PROVIDER:
        cost = 0.0
    plugins = []
    if ctx is not None:
        plugins = list(delivered[1] if delivered is not None else ctx.modified_by)
        if ctx.stopped_by and ctx.stopped_by not in plugins:
            plugins.append(ctx.stopped_by)
    entry: dict[str, Any] = {
        "type": "complete",
        "id": request_id,
        "ts_ms": now_ms(),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "endpoint": endpoint,
        "status": status,
        "provider": ctx.provider if ctx is not None else None,
        "requested_model": ctx.request.model if ctx is not None else request_model,
        "sent_model": ctx.sent_model if ctx is not None else None,
        "tags": list(ctx.request.tags) if ctx is not None else [],
        "response_tags": list(ctx.response_tags) if ctx is not None else [],
        "plugins": plugins,
        "stream": ctx.request.stream if ctx is not None else False,
        "request": logged_request(ctx) if ctx is not None else None,
        "response": response.model_dump(mode="json") if response is not None else None,
        "error": error,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        if usage is not None else None,
        "cost_usd": cost,
        "key": ctx.key_name if ctx is not None else key,
    }
    if ctx is not None and CLIENT_BODY in ctx.state:
        entry["request_format"] = ctx.state[CLIENT_BODY].format
    if ctx is not None and "attempts" in ctx.state:
        entry["attempts"] = ctx.state["attempts"]
    return entry, usage


def logged_request(ctx: Context) -> dict[str, Any]:
    """The request as the client sent it: the client's own JSON (``request_format`` names its wire
    format), else the canonical request from before any plugin ran."""
    client_body: ClientBody | None = ctx.state.get(CLIENT_BODY)
    if client_body is not None:
        return ParsedJSON(client_body.body, client_body.raw)
    return ctx.state.get(LOGGED_REQUEST) or as_sent(ctx.request)


def as_sent(request: ChatRequest) -> dict[str, Any]:
    """The logged form of a request no plugin could have changed: the router's own additions
    (classifier tags, a forced provider) are taken out again."""
    return request.model_dump(mode="json", exclude={"headers", "tags", "forced_provider"}) | {
        "tags": [], "forced_provider": None}
