"""Router rule ``tag``: routes requests carrying a classifier tag to one provider.

Settings (one ``[[routers]]`` table):

``tag`` (required)
    A tag set by a classifier (for example ``code`` from the ``keyword`` classifier). Matched
    exactly against the request's tags.
``provider`` (required)
    The provider to route to; if it is not loaded the rule passes.
``rewrite_model`` (optional)
    The model name sent upstream; when absent the requested model is sent unchanged.

Example::

    [[routers]]
    type = "tag"
    tag = "code"
    provider = "coder"
    rewrite_model = "qwen2.5-coder:7b"
"""

from __future__ import annotations

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import optional_str, require_str


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to ``provider`` when ``tag`` is among the request's tags."""
    tag = require_str(ctx.settings, "tag")
    provider = require_str(ctx.settings, "provider")
    rewrite = optional_str(ctx.settings, "rewrite_model")
    if tag in ctx.request.tags and provider in ctx.providers:
        return Route(provider, rewrite)
    return None
