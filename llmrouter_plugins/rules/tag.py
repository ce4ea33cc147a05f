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

from collections.abc import Iterable
from functools import cached_property

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter.settings import PluginSettings
from llmrouter_plugins.rules._select import Name, OptionalName


class Settings(PluginSettings):
    """``[[routers]] type = "tag"``."""

    tag: Name
    provider: Name
    rewrite_model: OptionalName = None

    @cached_property
    def route(self) -> Route:
        """``Route(provider, rewrite_model)``, made once (routes are immutable)."""
        return Route(self.provider, self.rewrite_model)

    def referenced_providers(self) -> Iterable[str]:
        """``provider``."""
        return [self.provider]

    def referenced_models(self) -> Iterable[tuple[str, str | None]]:
        """``rewrite_model``, sent to ``provider``."""
        return [(self.rewrite_model, self.provider)] if self.rewrite_model else []


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to ``provider`` when ``tag`` is among the request's tags."""
    settings: Settings = ctx.settings
    if settings.tag in ctx.request.tags and settings.provider in ctx.providers:
        return settings.route
    return None
