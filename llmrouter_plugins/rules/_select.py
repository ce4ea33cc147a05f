"""Helpers shared by the built-in router rules: the common settings and choosing among providers.

Common semantics:

* ``providers`` (a list of names) is the candidate list; absent or empty means every loaded
  provider, in config order. Names that are not loaded (for example, a missing API key) are
  skipped, so a rule whose providers are all unavailable passes.
* When a rule ranks providers, those missing the metric it needs are excluded, and ties go to
  the first candidate in list order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

from pydantic import BeforeValidator, Field, Strict

from llmrouter.context import Context, ProviderInfo, Route
from llmrouter.settings import PluginSettings


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


Name = Annotated[str, Field(min_length=1)]
"""A required, non-empty string (a provider or model name)."""
OptionalName = Annotated[str | None, BeforeValidator(_empty_is_none)]
"""An optional name; an empty string means unset."""
Number = Annotated[float, Strict()]
"""A number (an integer is accepted; a boolean or a string is not)."""


class RuleSettings(PluginSettings):
    """Settings every ranking rule shares: the candidate ``providers`` and an optional ``rewrite_model``."""

    providers: tuple[Name, ...] = ()
    rewrite_model: OptionalName = None

    def referenced_providers(self) -> Iterable[str]:
        """The candidate providers named in the rule."""
        return self.providers

    def referenced_models(self) -> Iterable[tuple[str, str | None]]:
        """``rewrite_model``, owned by no single provider."""
        return [(self.rewrite_model, None)] if self.rewrite_model else []


def candidates(ctx: Context, names: Iterable[str] | None = None) -> list[ProviderInfo]:
    """The loaded providers a rule may choose from, in list order, without duplicates.

    ``names`` (default: the rule's ``providers``) empty means every loaded provider in config order.
    """
    if names is None:
        names = ctx.settings.providers
    if not names:
        return list(ctx.providers.values())
    return [ctx.providers[n] for n in dict.fromkeys(names) if n in ctx.providers]


def best(
    providers: Iterable[ProviderInfo],
    metric: Callable[[ProviderInfo], float | None],
    *,
    highest: bool,
    accept: Callable[[float], bool] = lambda _: True,
) -> ProviderInfo | None:
    """The provider with the lowest (or ``highest``) metric among those with an acceptable one.

    Providers whose metric is ``None`` are excluded; ties keep the earliest provider.
    """
    chosen: ProviderInfo | None = None
    chosen_value = 0.0
    for info in providers:
        value = metric(info)
        if value is None or not accept(value):
            continue
        if chosen is None or (value > chosen_value if highest else value < chosen_value):
            chosen, chosen_value = info, value
    return chosen


def route_to(info: ProviderInfo | None, rewrite_model: str | None) -> Route | None:
    """A :class:`Route` to ``info`` with the rule's optional ``rewrite_model``, or ``None`` to pass."""
    if info is None:
        return None
    return Route(info.name, rewrite_model)
