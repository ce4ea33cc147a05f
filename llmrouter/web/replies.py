"""Reply building blocks: request ids, the client's error shape, the ``X-Router-*`` headers."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llmrouter.context import Context
from llmrouter.errors import RouterError
from llmrouter.formats import CLIENT_FORMATS, ClientFormat
from llmrouter.jsonutil import dumps

_OPENAI = CLIENT_FORMATS["openai"]
_ANTHROPIC = CLIENT_FORMATS["anthropic"]


def new_request_id() -> str:
    """A 32-hex-digit request id. Ids only need to be unique, not unguessable, so this avoids a
    ``getrandom`` system call per request."""
    return f"{random.getrandbits(128):032x}"


def format_for_path(path: str) -> ClientFormat:
    """The client format whose error shape fits ``path`` (Anthropic for /v1/messages)."""
    return _ANTHROPIC if path.startswith("/v1/messages") else _OPENAI


def error_response(fmt: ClientFormat, error: RouterError, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error reply in ``fmt``'s own shape."""
    return web.Response(status=error.status, body=dumps(fmt.render_error(error)),
                        content_type="application/json", headers=headers)


def error_headers(request_id: str, ctx: Context | None, error: RouterError) -> dict[str, str]:
    headers = router_headers(request_id, ctx)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None and error.status == 429:
        retry_after = 1.0  # the upstream named no wait: a client honouring Retry-After still backs off
    if retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers


def router_headers(request_id: str, ctx: Context | None) -> dict[str, str]:
    headers = {"X-Router-Request-Id": request_id}
    if ctx is not None:
        if ctx.provider:
            headers["X-Router-Provider"] = ctx.provider
        model = ctx.sent_model or (ctx.response.model if ctx.response is not None else None)
        if model:
            headers["X-Router-Model"] = header_safe(model)
        if ctx.request.tags:
            headers["X-Router-Request-Tags"] = header_safe(",".join(ctx.request.tags))
    return headers


def reply_headers(request_id: str, ctx: Context) -> dict[str, str]:
    """Headers of a complete (non-streaming) reply: :func:`router_headers` plus the response
    classifiers' tags and the token counts."""
    headers = router_headers(request_id, ctx)
    response = ctx.response
    if ctx.response_tags:
        headers["X-Router-Response-Tags"] = header_safe(",".join(ctx.response_tags))
    if response is not None:
        usage = response.usage
        headers["X-Router-Input-Tokens"] = str(usage.input_tokens)
        headers["X-Router-Output-Tokens"] = str(usage.output_tokens)
    return headers


def header_safe(value: str) -> str:
    """``value`` with control characters replaced by ``?``: client-chosen text (the model name) must
    not be able to break or inject response headers."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value)


def body_model(body: Any) -> str | None:
    """The ``model`` a (possibly invalid) request body names, for events of rejected requests."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None
