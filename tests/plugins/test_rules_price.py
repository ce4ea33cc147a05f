"""Unit tests for the ``price`` router rule."""

from __future__ import annotations

import pytest

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import price

PROVIDERS = [
    ProviderInfo("pricey", "openai", cost=15.0),
    ProviderInfo("cheap", "openai", cost=0.5),
    ProviderInfo("free", "ollama", cost=0.0),
    ProviderInfo("unknown", "openai"),
    ProviderInfo("also-cheap", "openai", cost=0.5),
]


def _ctx(make_ctx, **settings):
    return make_ctx(providers=PROVIDERS, plugin=price, settings=settings)


def test_cheapest_within_limit_from_the_list(make_ctx) -> None:
    ctx = _ctx(make_ctx, providers=["pricey", "cheap"], max_cost_per_1m_tokens=1.0)
    assert price.route(ctx) == Route("cheap")


def test_empty_providers_means_all_loaded(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=[], max_cost_per_1m_tokens=1.0)) == Route("free")
    assert price.route(_ctx(make_ctx, max_cost_per_1m_tokens=1.0)) == Route("free")


def test_limit_is_inclusive(make_ctx) -> None:
    ctx = _ctx(make_ctx, providers=["pricey"], max_cost_per_1m_tokens=15)
    assert price.route(ctx) == Route("pricey")


def test_nothing_within_limit_passes(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=["pricey"], max_cost_per_1m_tokens=1.0)) is None


def test_ties_go_to_the_first_in_list_order(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=["also-cheap", "cheap"])) == Route("also-cheap")
    assert price.route(_ctx(make_ctx, providers=["cheap", "also-cheap"])) == Route("cheap")


def test_providers_missing_cost_are_excluded(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=["unknown"])) is None
    assert price.route(_ctx(make_ctx, providers=["unknown", "pricey"])) == Route("pricey")


def test_not_loaded_providers_are_skipped(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=["gone", "pricey"])) == Route("pricey")
    assert price.route(_ctx(make_ctx, providers=["gone"])) is None


def test_no_limit_picks_the_cheapest(make_ctx) -> None:
    assert price.route(_ctx(make_ctx, providers=["pricey", "cheap"])) == Route("cheap")


def test_bad_limit_raises(make_ctx) -> None:
    with pytest.raises(ValueError, match="key 'max_cost_per_1m_tokens'"):
        _ctx(make_ctx, max_cost_per_1m_tokens="cheap")  # validated when the settings are loaded
    with pytest.raises(ValueError, match="key 'max_cost_per_1m_tokens'"):
        _ctx(make_ctx, max_cost_per_1m_tokens=True)
