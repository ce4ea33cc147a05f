"""Helpers shared by the built-in router rules: reading settings and choosing among providers.

Common semantics:

* ``providers`` (a list of names) is the candidate list; absent or empty means every loaded
  provider, in config order. Names that are not loaded (for example, a missing API key) are
  skipped, so a rule whose providers are all unavailable passes.
* When a rule ranks providers, those missing the metric it needs are excluded, and ties go to
  the first candidate in list order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from llmrouter.context import Context, ProviderInfo, Route


class RuleSettingsError(ValueError):
    """A router rule's table has a missing or ill-typed key."""


def rule_label(settings: dict[str, Any]) -> str:
    """Name a rule in messages, e.g. ``router rule 'price'``."""
    return f"router rule {settings.get('type', '?')!r}"


def require_str(settings: dict[str, Any], key: str) -> str:
    """Return the non-empty string ``settings[key]`` or raise :class:`RuleSettingsError`."""
    value = settings.get(key)
    if not isinstance(value, str) or not value:
        raise RuleSettingsError(f"{rule_label(settings)}: key {key!r} must be a non-empty string")
    return value


def optional_str(settings: dict[str, Any], key: str) -> str | None:
    """Return ``settings[key]`` if it is a non-empty string, ``None`` if absent or empty, else raise."""
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RuleSettingsError(f"{rule_label(settings)}: key {key!r} must be a string")
    return value


def optional_number(settings: dict[str, Any], key: str, default: float | None = None) -> float | None:
    """Return ``settings[key]`` as a float (``default`` when absent); reject non-numbers and booleans."""
    value = settings.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleSettingsError(f"{rule_label(settings)}: key {key!r} must be a number, got {value!r}")
    return float(value)


def candidates(ctx: Context, key: str = "providers") -> list[ProviderInfo]:
    """The loaded providers a rule may choose from, in list order, without duplicates.

    ``settings[key]`` absent or empty means every loaded provider in config order.
    """
    names = ctx.settings.get(key)
    if names is None or names == []:
        return list(ctx.providers.values())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RuleSettingsError(f"{rule_label(ctx.settings)}: key {key!r} must be a list of provider names")
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


def route_to(info: ProviderInfo | None, settings: dict[str, Any]) -> Route | None:
    """A :class:`Route` to ``info`` with the rule's optional ``rewrite_model``, or ``None`` to pass."""
    if info is None:
        return None
    return Route(info.name, optional_str(settings, "rewrite_model"))
