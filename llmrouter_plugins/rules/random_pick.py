"""Router rule ``random``: spreads requests uniformly over providers or provider/model pairs.

Settings (one ``[[routers]]`` table):

``providers`` (optional)
    Provider names to choose from. Absent or empty means every loaded provider.
``candidates`` (optional, takes precedence over ``providers``)
    A list of ``{provider = "...", model = "..."}`` tables; ``model`` (optional) is the model sent
    upstream with that provider.
``rewrite_model`` (optional, with ``providers`` only)
    The model name sent upstream.
``seed`` (optional)
    Seeds a fresh random generator for every call, so a given seed always makes the same pick:
    meant for tests and reproducible experiments. Without it the module's own generator is used.

Providers that are not loaded are never picked; when none is loaded the rule passes.

Example::

    [[routers]]
    type = "random"
    candidates = [
      { provider = "openai", model = "gpt-4o-mini" },
      { provider = "anthropic", model = "claude-3-5-haiku-latest" },
    ]
"""

from __future__ import annotations

import random
from typing import Any

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import RuleSettingsError, candidates, optional_str, route_to, rule_label

_rng = random.Random()


@hookimpl
def route(ctx: Context) -> Route | None:
    """Pick one available provider (or candidate) uniformly at random."""
    settings = ctx.settings
    if settings.get("candidates") is not None:
        choices = [r for r in _candidate_routes(settings) if r.provider in ctx.providers]
    else:
        choices = [r for r in (route_to(p, settings) for p in candidates(ctx)) if r is not None]
    if not choices:
        return None
    seed = settings.get("seed")
    rng = _rng if seed is None else random.Random(seed)
    return rng.choice(choices)


def _candidate_routes(settings: dict[str, Any]) -> list[Route]:
    """Validate ``candidates`` and turn each entry into a :class:`Route`."""
    entries = settings["candidates"]
    problem = f"{rule_label(settings)}: key 'candidates' must be a list of {{provider, model}} tables"
    if not isinstance(entries, list):
        raise RuleSettingsError(problem)
    routes = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("provider"), str):
            raise RuleSettingsError(problem)
        try:
            model = optional_str(entry, "model")
        except RuleSettingsError:
            raise RuleSettingsError(problem) from None
        routes.append(Route(entry["provider"], model))
    return routes
