"""Plugin ``pareto-router``: picks a provider by quality tier, bypassing the router chain.

Tiers name lists of providers (``low``/``medium``/``high`` or any names you like). In
``pre_request`` the plugin takes the requested tier (``tier``, usually sent per request as
``{"id": "pareto-router", "tier": "high"}``) or else ``default_tier``, and forces the first
provider of that tier that is loaded; the ``[[routers]]`` chain is then skipped.

* An unknown tier is a 400 listing the known tiers.
* A tier that was asked for (``tier``) but has no loaded provider is a 400 naming the tier: the
  client asked for something the router cannot give, and silently sending the request elsewhere
  would hide that.
* Malformed ``tiers``/``default_tier`` in the config, or a tier naming a provider that is not
  configured, stop startup (``llmrouter check`` names the key). Only ``tier`` is request-settable.
* When ``default_tier`` has no loaded provider, or there is neither ``tier`` nor
  ``default_tier``, the plugin does nothing and the router chain decides as usual.

Settings (``[plugins.pareto-router]``):

``tiers``
    A table mapping tier names to lists of provider names, best first.
``default_tier`` (optional)
    The tier used when the request names none. Must be one of ``tiers``.
``tier`` (optional, normally per request)
    The tier to use for this request.

Example::

    [plugins.pareto-router]
    enabled = true
    default_tier = "low"
    [plugins.pareto-router.tiers]
    low = ["local"]
    medium = ["groq", "openai"]
    high = ["anthropic", "openai"]

and per request: ``"plugins": [{"id": "pareto-router", "tier": "high"}]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, StrictStr, model_validator

from llmrouter.context import Context
from llmrouter.errors import InvalidRequest
from llmrouter.hookspecs import hookimpl
from llmrouter.settings import PluginSettings, request_settable


class Settings(PluginSettings):
    """``[plugins.pareto-router]``; ``tier`` may be set per request."""

    tiers: dict[str, tuple[Annotated[str, Field(min_length=1)], ...]] = {}
    default_tier: str | None = None
    tier: StrictStr | None = request_settable(None, description="the tier for this request")

    @model_validator(mode="after")
    def _default_is_a_tier(self) -> Settings:
        if self.default_tier is not None and self.default_tier not in self.tiers:
            raise ValueError(f"pareto-router: default_tier {self.default_tier!r} is not one of the tiers "
                             f"({_names(self.tiers)})")
        return self

    def referenced_providers(self) -> Iterable[str]:
        """Every provider of every tier."""
        return [name for providers in self.tiers.values() for name in providers]


@hookimpl
def pre_request(ctx: Context) -> None:
    """Force the first loaded provider of the requested (or default) tier."""
    settings: Settings = ctx.settings
    tiers = settings.tiers
    requested = settings.tier
    tier = requested if requested is not None else settings.default_tier
    if tier is None:
        return
    if tier not in tiers:
        raise InvalidRequest(f"pareto-router: unknown tier {tier!r}; known tiers: {_names(tiers)}")
    provider = next((name for name in tiers[tier] if name in ctx.providers), None)
    if provider is None:
        if requested is None:
            return
        listed = ", ".join(tiers[tier]) or "none"
        raise InvalidRequest(f"pareto-router: no available provider in tier {tier!r} (configured: {listed})")
    ctx.request.forced_provider = provider
    ctx.mark_modified()


def _names(tiers: dict[str, tuple[str, ...]]) -> str:
    """The tier names in config order, for messages."""
    return ", ".join(tiers) or "none configured"
