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
from collections.abc import Iterable

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter.settings import PluginSettings
from llmrouter_plugins.rules._select import Name, OptionalName, RuleSettings, candidates, route_to

_rng = random.Random()


class Candidate(PluginSettings):
    """One ``{provider, model}`` entry of ``candidates``."""

    provider: Name
    model: OptionalName = None


class Settings(RuleSettings):
    """``[[routers]] type = "random"``."""

    candidates: tuple[Candidate, ...] | None = None
    seed: int | str | None = None

    def referenced_providers(self) -> Iterable[str]:
        """``providers`` and each candidate's provider."""
        return [*self.providers, *(c.provider for c in self.candidates or ())]

    def referenced_models(self) -> Iterable[tuple[str, str | None]]:
        """``rewrite_model`` and each candidate's model (sent to its provider)."""
        pairs = list(super().referenced_models())
        pairs += [(c.model, c.provider) for c in self.candidates or () if c.model]
        return pairs

    @property
    def routes(self) -> tuple[Route, ...]:
        """The candidates as routes."""
        return tuple(Route(c.provider, c.model) for c in self.candidates or ())


@hookimpl
def route(ctx: Context) -> Route | None:
    """Pick one available provider (or candidate) uniformly at random."""
    settings: Settings = ctx.settings
    if settings.candidates is not None:
        choices = [r for r in settings.routes if r.provider in ctx.providers]
    else:
        choices = [r for r in (route_to(p, settings.rewrite_model) for p in candidates(ctx)) if r is not None]
    if not choices:
        return None
    rng = _rng if settings.seed is None else random.Random(settings.seed)
    return rng.choice(choices)
