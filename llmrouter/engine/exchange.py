"""The record of one exchange: the ``complete`` event and log line built from a request's context,
and the ``ctx.state`` keys the pipeline leaves for it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llmrouter.context import Context
from llmrouter.formats.passthrough import ClientBody
from llmrouter.models import ChatRequest, ChatResponse, TextPart, Usage
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
    if ctx is None:
        entry: dict[str, Any] = {
            "type": "complete", "id": request_id, "ts_ms": now_ms(),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3), "endpoint": endpoint,
            "status": status, "provider": None, "requested_model": request_model, "sent_model": None, "tags": [],
            "response_tags": [], "plugins": [], "stream": False, "request": None, "response": None, "error": error,
            "usage": None, "cost_usd": None, "key": key,
        }
        return entry, None
    state = ctx.state
    response = ctx.response
    delivered = state.get(DELIVERED)
    if delivered is not None:
        response, plugins = delivered[0], list(delivered[1])
    else:
        plugins = list(ctx.modified_by)
    if ctx.stopped_by and ctx.stopped_by not in plugins:
        plugins.append(ctx.stopped_by)
    usage = response.usage if response is not None else None
    cost = None
    if ctx.provider == PLUGIN_PROVIDER:
        cost = 0.0
    elif ctx.provider and usage is not None:
        provider = providers.get(ctx.provider)
        if provider is not None:
            cost = provider.cost_usd(usage, ctx.sent_model, response.model)  # type: ignore[union-attr]
    request = ctx.request
    client_body: ClientBody | None = state.get(CLIENT_BODY)
    entry = {
        "type": "complete",
        "id": request_id,
        "ts_ms": now_ms(),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "endpoint": endpoint,
        "status": status,
        "provider": ctx.provider,
        "requested_model": request.model,
        "sent_model": ctx.sent_model,
        "tags": list(request.tags),
        "response_tags": list(ctx.response_tags),
        "plugins": plugins,
        "stream": request.stream,
        "request": ParsedJSON(client_body.body, client_body.raw) if client_body is not None else logged_request(ctx),
        "response": dumped_response(response) if response is not None else None,
        "error": error,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        if usage is not None else None,
        "cost_usd": cost,
        "key": ctx.key_name,
    }
    if client_body is not None:
        entry["request_format"] = client_body.format
    attempts = state.get("attempts")
    if attempts is not None or "attempts" in state:
        entry["attempts"] = attempts
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


_SCALARS = frozenset({str, int, bool, type(None)})
"""Types ``model_dump(mode="json")`` gives back as they are (not ``float``: infinities become null)."""


def dumped_response(response: ChatResponse) -> dict[str, Any]:
    """``response.model_dump(mode="json")``, written out for the usual reply (text parts without
    extras, plain scalar ``extra`` values, integer usage); any other reply is dumped by pydantic."""
    usage = response.usage
    extra = response.extra
    if type(response) is not ChatResponse or type(usage) is not Usage or type(extra) is not dict:
        return response.model_dump(mode="json")
    content = []
    for part in response.content:
        if type(part) is not TextPart or type(part.text) is not str or part.extra or type(part.extra) is not dict \
                or part.type != "text":
            return response.model_dump(mode="json")
        content.append({"type": "text", "text": part.text, "extra": {}})
    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    read, created = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    if type(input_tokens) is not int or type(output_tokens) is not int or (read is not None and type(read) is not int) \
            or (created is not None and type(created) is not int):
        return response.model_dump(mode="json")
    for key, value in extra.items():
        if type(key) is not str or type(value) not in _SCALARS:
            return response.model_dump(mode="json")
    return {"id": response.id, "model": response.model, "content": content, "stop_reason": response.stop_reason,
            "stop_sequence": response.stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_input_tokens": read,
                      "cache_creation_input_tokens": created},
            "extra": dict(extra)}
