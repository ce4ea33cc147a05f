"""Router rule ``throughput``: the provider generating the most tokens per second.

Settings (one ``[[routers]]`` table):

``providers`` (optional)
    Candidate provider names. Absent or empty means every loaded provider, in config order.
    Providers that are not loaded are skipped.
``min_tokens_per_sec`` (optional)
    The lowest acceptable ``throughput_tokens_per_sec`` (inclusive). Absent means no minimum:
    the highest throughput wins.
``rewrite_model`` (optional)
    The model name sent upstream.

Providers without ``throughput_tokens_per_sec`` are excluded. Ties go to the first in list order.
With no candidate at or above the minimum the rule passes.

Example::

    [[routers]]
    type = "throughput"
    providers = ["groq", "local"]
    min_tokens_per_sec = 50
"""

from __future__ import annotations

from pydantic import Field

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import Number, RuleSettings, best, candidates, route_to


class Settings(RuleSettings):
    """``[[routers]] type = "throughput"``."""

    min_tokens_per_sec: Number | None = Field(default=None, ge=0)


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to the candidate with the highest throughput at or above ``min_tokens_per_sec``."""
    settings: Settings = ctx.settings
    minimum = settings.min_tokens_per_sec
    chosen = best(
        candidates(ctx),
        lambda p: p.throughput,
        highest=True,
        accept=lambda tps: minimum is None or tps >= minimum,
    )
    return route_to(chosen, settings.rewrite_model)
