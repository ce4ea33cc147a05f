"""Router rule ``fallback``: the best trade-off between quality and cost; the usual last rule.

Settings (one ``[[routers]]`` table):

``providers`` (optional)
    Candidate provider names. Absent or empty means every loaded provider, in config order.
    Providers that are not loaded are skipped.
``quality_bias`` (optional, default ``0.5``)
    A number from 0 to 1. Each candidate scores
    ``quality_bias * quality - (1 - quality_bias) * cost_per_1m_tokens``; the highest score wins.
    ``1`` means quality only, ``0`` means cost only.
``rewrite_model`` (optional)
    The model name sent upstream.

Ties go to the first in list order. A metric with a non-zero weight is needed: candidates missing
it are not scored (``quality`` is not needed when ``quality_bias = 0``, nor cost when it is
``1``). Because this rule is meant to catch whatever earlier rules left, when no candidate can be
scored the first loaded candidate is chosen; the rule passes only when none of its providers is
loaded.

Example::

    [[routers]]
    type = "fallback"
    providers = ["local", "openai", "anthropic"]
    quality_bias = 0.7
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field

from llmrouter.context import Context, ProviderInfo, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import Number, RuleSettings, best, candidates, route_to


class Settings(RuleSettings):
    """``[[routers]] type = "fallback"``."""

    quality_bias: Number = Field(default=0.5, ge=0.0, le=1.0)

    @cached_property
    def last(self) -> list[Any]:
        """The last choice made with these settings: ``[providers, choice]``, where ``providers`` is
        what the choice depends on (the names and infos of ``ctx.providers``). Mutable."""
        return [None, None]


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to the candidate with the highest quality/cost score (or the first, if none can be scored)."""
    settings: Settings = ctx.settings
    # The choice depends only on the settings and the providers (frozen infos): usually the same
    # as for the previous request, told by comparing the infos (by identity first, C-speed).
    providers = ctx.providers
    key = (tuple(providers), tuple(providers.values()))
    last = settings.last
    if last[0] == key:
        return last[1]  # type: ignore[no-any-return]
    choice = _choose(ctx, settings)
    last[0], last[1] = key, choice
    return choice


def _choose(ctx: Context, settings: Settings) -> Route | None:
    bias = settings.quality_bias
    pool = candidates(ctx)
    if not pool:
        return None

    def score(info: ProviderInfo) -> float | None:
        quality = info.quality if bias > 0 else 0.0
        cost = info.cost if bias < 1 else 0.0
        if quality is None or cost is None:
            return None
        return bias * quality - (1.0 - bias) * cost

    return route_to(best(pool, score, highest=True) or pool[0], settings.rewrite_model)
