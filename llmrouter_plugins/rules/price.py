"""Router rule ``price``: the cheapest provider within a cost limit.

Settings (one ``[[routers]]`` table):

``providers`` (optional)
    Candidate provider names. Absent or empty means every loaded provider, in config order.
    Providers that are not loaded are skipped.
``max_cost_per_1m_tokens`` (optional)
    The highest acceptable ``cost_per_1m_tokens`` (inclusive). Absent means no limit: the
    cheapest candidate wins.
``rewrite_model`` (optional)
    The model name sent upstream.

Providers without ``cost_per_1m_tokens`` are excluded. Ties go to the first in list order. With
no candidate within the limit the rule passes.

Example::

    [[routers]]
    type = "price"
    providers = ["local", "groq", "openai"]
    max_cost_per_1m_tokens = 1.0
"""

from __future__ import annotations

from pydantic import Field

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import Number, RuleSettings, best, candidates, route_to


class Settings(RuleSettings):
    """``[[routers]] type = "price"``."""

    max_cost_per_1m_tokens: Number | None = Field(default=None, ge=0)


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to the cheapest candidate whose cost is within ``max_cost_per_1m_tokens``."""
    settings: Settings = ctx.settings
    limit = settings.max_cost_per_1m_tokens
    chosen = best(
        candidates(ctx),
        lambda p: p.cost,
        highest=False,
        accept=lambda cost: limit is None or cost <= limit,
    )
    return route_to(chosen, settings.rewrite_model)
