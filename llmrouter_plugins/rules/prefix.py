"""Router rule ``prefix``: routes models whose name starts with a prefix to one provider.

Settings (one ``[[routers]]`` table):

``model_prefix`` (required)
    Matched case-sensitively against the start of the requested model name.
``provider`` (required)
    The provider to route to. If it is not loaded (for example, its API key is missing) the rule
    passes.
``rewrite_model`` (optional)
    The model name sent upstream. When absent, the requested model is sent unchanged
    (``model_prefix = "gpt-"`` sends ``gpt-4o-mini`` as ``gpt-4o-mini``).
``strip_prefix`` (optional, default ``false``)
    Set to ``true`` to send the requested model with the prefix removed when there is no
    ``rewrite_model`` (``local/qwen2.5:7b`` becomes ``qwen2.5:7b``); a model that is nothing but
    the prefix then passes, since there is no name left to send.

Example::

    [[routers]]
    type = "prefix"
    model_prefix = "local/"
    provider = "local"
    rewrite_model = "llama3.2-3b"
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from pydantic import StrictBool

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter.settings import PluginSettings
from llmrouter_plugins.rules._select import Name, OptionalName


class Settings(PluginSettings):
    """``[[routers]] type = "prefix"``."""

    model_prefix: Name
    provider: Name
    rewrite_model: OptionalName = None
    strip_prefix: StrictBool = False

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
    """Route to ``provider`` when the requested model starts with ``model_prefix``."""
    settings: Settings = ctx.settings
    model = ctx.request.model
    if not model.startswith(settings.model_prefix) or settings.provider not in ctx.providers:
        return None
    if settings.rewrite_model is not None or not settings.strip_prefix:
        return settings.route  # Route(provider, rewrite_model)
    rest = model[len(settings.model_prefix):]
    return Route(settings.provider, rest) if rest else None
