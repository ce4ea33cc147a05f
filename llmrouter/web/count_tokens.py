"""``POST /v1/messages/count_tokens``: Anthropic's token counting, for every provider.

The body (a Messages request without ``max_tokens``) is validated and routed like ``/v1/messages``:
classifiers run and the ``[[routers]]`` chain picks the provider and model, but ``on_start`` and
``pre_request`` plugins do not run, and the request is not a chat exchange (no events, no log line).

* An Anthropic-format provider counts: the client's body goes to its
  ``/v1/messages/count_tokens`` with the routed model (``plugins`` removed), credentials and the
  client's ``anthropic-version``/``anthropic-beta`` headers, and its reply comes back as sent.
* Any other provider, or an Anthropic-format upstream without the endpoint (404/405), gets a
  tokenizer-free estimate (:mod:`llmrouter.formats.token_estimate`).

A virtual key's ``models`` and ``providers`` allow-lists apply (403), its rate limits and budget
do not. The reply is ``{"input_tokens": N}`` with the router headers plus ``X-Router-Token-Count:
upstream`` or ``estimate``; errors use the Anthropic error shape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmrouter.errors import RouterError
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.token_estimate import estimate_input_tokens
from llmrouter.jsonutil import dumps
from llmrouter.web.appkeys import LIMITER, LIVE, PRINCIPAL
from llmrouter.web.limits import check_content_type, check_limits, read_json
from llmrouter.web.replies import error_response, new_request_id, router_headers

ENDPOINT = "/v1/messages/count_tokens"
TOKEN_COUNT_HEADER = "X-Router-Token-Count"

__all__ = ["ENDPOINT", "TOKEN_COUNT_HEADER", "count_tokens_handler"]


async def count_tokens_handler(request: web.Request) -> web.Response:
    """Count (or estimate) the input tokens of an Anthropic Messages body; see the module notes."""
    fmt = CLIENT_FORMATS["anthropic"]
    assert isinstance(fmt, AnthropicFormat)
    generation = request.app[LIVE].current
    pipeline, config = generation.pipeline, generation.config
    request_id = new_request_id()
    ctx = None
    try:
        check_content_type(request)
        body = await read_json(request, int(config.server.max_body_mb * 1024 * 1024))
        check_limits(body, config.server.max_json_depth, config.server.max_messages)
        chat_request = fmt.parse_count_tokens_request(body, request.headers)
        principal = request.get(PRINCIPAL)
        limiter = request.app[LIMITER] if principal is not None and principal.key is not None else None
        if limiter is not None:  # a key's allow-lists hold here too (no rpm/budget: counting is free)
            limiter.check_model(principal, chat_request.model)
        ctx = pipeline.new_context(chat_request, request_id, ENDPOINT)
        await pipeline.resolve_route(ctx)
        assert ctx.provider is not None and ctx.sent_model is not None
        if limiter is not None:
            limiter.check_provider(principal.name, ctx.provider, chat_request.model)
        provider = pipeline.providers[ctx.provider]
        reply: dict[str, Any] | None = None
        if provider.format_name == "anthropic":
            upstream_body = {k: v for k, v in body.items() if k != "plugins"}
            upstream_body["model"] = ctx.sent_model
            reply = await provider.count_tokens(upstream_body, chat_request, pipeline.http)  # type: ignore[arg-type]
        source = "upstream" if reply is not None else "estimate"
        if reply is None:
            reply = {"input_tokens": estimate_input_tokens(chat_request)}
    except RouterError as exc:
        return error_response(fmt, exc, router_headers(request_id, ctx))
    headers = {**router_headers(request_id, ctx), TOKEN_COUNT_HEADER: source}
    return web.Response(body=dumps(reply), content_type="application/json", headers=headers)
