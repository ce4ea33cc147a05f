"""Router rule ``discover``: routes a model to a provider that reports serving it.

Providers list their models at startup and on an interval (``GET /api/tags`` for Ollama,
``GET {base_url}/models`` for OpenAI-compatible servers), together with any ``models`` given in
their config. This rule routes when the requested model is among them and passes otherwise,
including when discovery failed.

Settings (one ``[[routers]]`` table):

``provider`` (optional)
    The provider whose models are checked. If it is not loaded the rule passes.
``providers`` (optional, used when ``provider`` is absent)
    Providers to check in order; the first that serves the model wins. Absent or empty means every
    loaded provider in config order.

The model name is matched exactly, except that a bare name also matches its ``:latest`` tag
(``llama3.2`` matches ``llama3.2:latest``), as Ollama does. The model is sent unchanged.

Example::

    [[routers]]
    type = "discover"
    provider = "ollama"
"""

from __future__ import annotations

from collections.abc import Iterable

from llmrouter.context import Context, ProviderInfo, Route
from llmrouter.hookspecs import hookimpl
from llmrouter.settings import PluginSettings
from llmrouter_plugins.rules._select import Name, OptionalName, candidates


class Settings(PluginSettings):
    """``[[routers]] type = "discover"``."""

    provider: OptionalName = None
    providers: tuple[Name, ...] = ()

    def referenced_providers(self) -> Iterable[str]:
        """``provider`` and ``providers``."""
        return ([self.provider] if self.provider else []) + list(self.providers)


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to the first candidate provider whose discovered models include the requested one."""
    name = ctx.settings.provider
    if name is not None:
        pool = [ctx.providers[name]] if name in ctx.providers else []
    else:
        pool = candidates(ctx)
    model = ctx.request.model
    for info in pool:
        if _serves(info, model):
            return Route(info.name)
    return None


def _serves(info: ProviderInfo, model: str) -> bool:
    """Whether ``info`` lists ``model`` (or ``model:latest``)."""
    return model in info.models or f"{model}:latest" in info.models
