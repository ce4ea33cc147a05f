"""Unit tests for the ``pareto-router`` plugin."""

from __future__ import annotations

import pytest

from llmrouter.context import ProviderInfo
from llmrouter.errors import InvalidRequest
from llmrouter_plugins import pareto_router

LOADED = [ProviderInfo(n, "openai") for n in ("local", "groq", "openai")]
TIERS = {"low": ["local"], "medium": ["groq", "openai"], "high": ["anthropic", "openai"], "empty": []}


def _run(make_ctx, config=None, **settings):
    ctx = make_ctx(providers=LOADED, settings=settings, config_settings=config, plugin_id="pareto-router")
    return ctx, pareto_router.pre_request(ctx)


def test_requested_tier_forces_its_first_provider(make_ctx) -> None:
    ctx, flow = _run(make_ctx, tiers=TIERS, default_tier="low", tier="medium")
    assert flow is None
    assert ctx.request.forced_provider == "groq"
    assert ctx.modified_by == ["pareto-router"]


def test_providers_that_are_not_loaded_are_skipped(make_ctx) -> None:
    ctx, _ = _run(make_ctx, tiers=TIERS, tier="high")
    assert ctx.request.forced_provider == "openai"


def test_default_tier_applies_without_a_requested_tier(make_ctx) -> None:
    ctx, _ = _run(make_ctx, tiers=TIERS, default_tier="low")
    assert ctx.request.forced_provider == "local"


def test_no_tier_and_no_default_passes(make_ctx) -> None:
    ctx, flow = _run(make_ctx, tiers=TIERS)
    assert flow is None
    assert ctx.request.forced_provider is None
    assert ctx.modified_by == []


def test_any_tier_names_work(make_ctx) -> None:
    ctx, _ = _run(make_ctx, tiers={"fast": ["groq"], "smart": ["openai"]}, tier="smart")
    assert ctx.request.forced_provider == "openai"


def test_unknown_tier_is_a_400_listing_known_tiers(make_ctx) -> None:
    with pytest.raises(InvalidRequest, match="unknown tier 'ultra'.*low, medium, high, empty") as info:
        _run(make_ctx, tiers=TIERS, tier="ultra")
    assert info.value.status == 400


def test_requested_tier_without_available_provider_is_a_400(make_ctx) -> None:
    with pytest.raises(InvalidRequest, match="tier 'empty'"):
        _run(make_ctx, tiers=TIERS, tier="empty")
    with pytest.raises(InvalidRequest, match="tier 'gone'.*anthropic"):
        _run(make_ctx, tiers={"gone": ["anthropic"]}, tier="gone")


def test_default_tier_without_available_provider_passes(make_ctx) -> None:
    ctx, flow = _run(make_ctx, tiers={"gone": ["anthropic"]}, default_tier="gone")
    assert flow is None
    assert ctx.request.forced_provider is None


def test_non_string_tier_is_rejected(make_ctx) -> None:
    with pytest.raises(ValueError, match="key 'tier'"):
        _run(make_ctx, tiers=TIERS, tier=3)


@pytest.mark.parametrize(
    "settings",
    [
        {"tiers": ["low"]},
        {"tiers": {"low": "local"}},
        {"tiers": {"low": [1]}},
        {"tiers": {"low": ["local"]}, "default_tier": "high"},
    ],
)
def test_bad_settings_are_clear_errors(make_ctx, settings) -> None:
    with pytest.raises(ValueError, match="key 'tiers|default_tier 'high' is not one of the tiers"):
        _run(make_ctx, **settings)


def test_only_the_tier_is_request_settable() -> None:
    from llmrouter.engine.plugin_settings import SettingsSpec

    assert SettingsSpec.of(pareto_router).settable == {"tier"}
