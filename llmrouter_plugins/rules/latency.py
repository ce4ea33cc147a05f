"""Router rule ``latency``: the fastest-answering provider within a latency limit.

Settings (one ``[[routers]]`` table):

``providers`` (optional)
    Candidate provider names. Absent or empty means every loaded provider, in config order.
    Providers that are not loaded are skipped.
``max_latency_ms`` (optional)
    The highest acceptable ``latency_ms`` (inclusive). Absent means no limit: the lowest
    latency wins.
``rewrite_model`` (optional)
    The model name sent upstream.

Providers without ``latency_ms`` are excluded. Ties go to the first in list order. With no
candidate within the limit the rule passes.

Example::

    [[routers]]
    type = "latency"
    providers = ["groq", "local"]
    max_latency_ms = 800
"""

from __future__ import annotations

from pydantic import Field

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import Number, RuleSettings, best, candidates, route_to


class Settings(RuleSettings):
    """``[[routers]] type = "latency"``."""

    max_latency_ms: Number | None = Field(default=None, ge=0)


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to the candidate with the lowest latency at or below ``max_latency_ms``."""
    settings: Settings = ctx.settings
    limit = settings.max_latency_ms
    chosen = best(
        candidates(ctx),
        lambda p: p.latency,
        highest=False,
        accept=lambda ms: limit is None or ms <= limit,
    )
    return route_to(chosen, settings.rewrite_model)
