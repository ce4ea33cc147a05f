"""Plugin ``pareto-router``: picks a provider by quality tier, bypassing the router chain.

Tiers name lists of providers (``low``/``medium``/``high`` or any names you like). In
``pre_request`` the plugin takes the requested tier (``tier``, usually sent per request as
``{"id": "pareto-router", "tier": "high"}``) or else ``default_tier``, and forces the first
provider of that tier that is loaded; the ``[[routers]]`` chain is then skipped.

* An unknown tier is a 400 listing the known tiers.
* A tier that was asked for (``tier``) but has no loaded provider is a 400 naming the tier: the
  client asked for something the router cannot give, and silently sending the request elsewhere
  would hide that.
* Malformed ``tiers``/``default_tier`` in the config fail the request (500, naming the key);
  the same mistake made by a request's own settings is a 400.
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

from typing import Any

from llmrouter.context import Context
from llmrouter.errors import InvalidRequest
from llmrouter.hookspecs import hookimpl


@hookimpl
def pre_request(ctx: Context) -> None:
    """Force the first loaded provider of the requested (or default) tier."""
    settings = ctx.settings
    _check(ctx.config_settings)  # a config problem: fails loudly (500) naming the key
    try:
        tiers = _check(settings)
    except ValueError as exc:  # the config is fine, so the request's settings broke it
        raise InvalidRequest(str(exc)) from None
    default = settings.get("default_tier")
    requested = settings.get("tier")
    if requested is not None and not isinstance(requested, str):
        raise InvalidRequest(f"pareto-router: 'tier' must be a string, got {requested!r}")
    tier = requested if requested is not None else default
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


def _check(settings: dict[str, Any]) -> dict[str, list[str]]:
    """Validate ``tiers`` (tier name to provider names) and ``default_tier``; return the tiers."""
    tiers = settings.get("tiers", {})
    if not isinstance(tiers, dict):
        raise ValueError("pareto-router: 'tiers' must be a table of tier = [providers]")
    for name, providers in tiers.items():
        if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
            raise ValueError(f"pareto-router: tiers.{name} must be a list of provider names")
    default = settings.get("default_tier")
    if default is not None and default not in tiers:
        raise ValueError(f"pareto-router: default_tier {default!r} is not one of the tiers ({_names(tiers)})")
    return tiers


def _names(tiers: dict[str, list[str]]) -> str:
    """The tier names in config order, for messages."""
    return ", ".join(tiers) or "none configured"
