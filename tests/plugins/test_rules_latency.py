"""Unit tests for the ``latency`` router rule."""

from __future__ import annotations

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import latency

PROVIDERS = [
    ProviderInfo("slow", "openai", latency=2000),
    ProviderInfo("fast", "openai", latency=150),
    ProviderInfo("unknown", "openai"),
    ProviderInfo("also-fast", "openai", latency=150),
    ProviderInfo("medium", "openai", latency=600),
]


def _ctx(make_ctx, **settings):
    return make_ctx(providers=PROVIDERS, plugin=latency, settings=settings)


def test_lowest_latency_within_limit(make_ctx) -> None:
    assert latency.route(_ctx(make_ctx, providers=["slow", "medium"], max_latency_ms=1000)) == Route("medium")


def test_empty_providers_means_all(make_ctx) -> None:
    assert latency.route(_ctx(make_ctx, max_latency_ms=1000)) == Route("fast")


def test_over_limit_passes(make_ctx) -> None:
    assert latency.route(_ctx(make_ctx, providers=["slow"], max_latency_ms=1000)) is None


def test_ties_to_first(make_ctx) -> None:
    assert latency.route(_ctx(make_ctx, providers=["also-fast", "fast"])) == Route("also-fast")


def test_missing_latency_excluded_and_not_loaded_skipped(make_ctx) -> None:
    assert latency.route(_ctx(make_ctx, providers=["unknown", "gone"])) is None
    assert latency.route(_ctx(make_ctx, providers=["gone", "unknown", "slow"])) == Route("slow")
