"""Unit tests for the ``fallback`` router rule."""

from __future__ import annotations

import pytest

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import fallback

PROVIDERS = [
    ProviderInfo("big", "anthropic", cost=15.0, quality=90),
    ProviderInfo("small", "openai", cost=0.5, quality=60),
    ProviderInfo("local", "ollama", cost=0.0, quality=40),
    ProviderInfo("no-cost", "openai", quality=99),
    ProviderInfo("no-quality", "openai", cost=0.0),
    ProviderInfo("bare", "openai"),
    ProviderInfo("small-twin", "openai", cost=0.5, quality=60),
]


def _ctx(make_ctx, **settings):
    return make_ctx(providers=PROVIDERS, plugin=fallback, settings=settings)


def test_default_bias_balances_quality_and_cost(make_ctx) -> None:
    # 0.5*90 - 0.5*15 = 37.5; 0.5*60 - 0.5*0.5 = 29.75; 0.5*40 - 0 = 20
    assert fallback.route(_ctx(make_ctx, providers=["local", "small", "big"])) == Route("big")


def test_bias_zero_picks_the_cheapest(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["big", "small", "local"], quality_bias=0)) == Route("local")


def test_bias_one_picks_the_best_quality(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["local", "small", "big"], quality_bias=1)) == Route("big")


def test_intermediate_bias_changes_the_winner(make_ctx) -> None:
    # qb=0.2: big 18-12=6, small 12-0.4=11.6, local 8-0=8
    assert fallback.route(_ctx(make_ctx, providers=["big", "small", "local"], quality_bias=0.2)) == Route("small")


def test_rewrite_model(make_ctx) -> None:
    ctx = _ctx(make_ctx, providers=["small"], rewrite_model="gpt-4o-mini")
    assert fallback.route(ctx) == Route("small", "gpt-4o-mini")


def test_ties_to_first(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["small-twin", "small"])) == Route("small-twin")
    assert fallback.route(_ctx(make_ctx, providers=["small", "small-twin"])) == Route("small")


def test_providers_missing_a_weighted_metric_are_excluded(make_ctx) -> None:
    # no-cost would score 49.5 if its cost counted as 0; no-quality would win at qb=0.
    assert fallback.route(_ctx(make_ctx, providers=["no-cost", "small"])) == Route("small")
    assert fallback.route(_ctx(make_ctx, providers=["no-quality", "small"], quality_bias=0.5)) == Route("small")


def test_a_metric_with_zero_weight_is_not_needed(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["small", "no-cost"], quality_bias=1)) == Route("no-cost")
    assert fallback.route(_ctx(make_ctx, providers=["small", "no-quality"], quality_bias=0)) == Route("no-quality")


def test_without_any_metrics_the_first_available_provider_wins(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["gone", "bare", "no-cost"])) == Route("bare")


def test_empty_providers_means_all(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, quality_bias=1)) == Route("no-cost")


def test_no_loaded_provider_passes(make_ctx) -> None:
    assert fallback.route(_ctx(make_ctx, providers=["gone", "missing"])) is None


@pytest.mark.parametrize("bias", [-0.1, 1.5, "high"])
def test_bias_out_of_range_raises(make_ctx, bias) -> None:
    with pytest.raises(ValueError, match="quality_bias"):
        fallback.route(_ctx(make_ctx, quality_bias=bias))
