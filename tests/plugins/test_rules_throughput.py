"""Unit tests for the ``throughput`` router rule."""

from __future__ import annotations

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import throughput

PROVIDERS = [
    ProviderInfo("slow", "openai", throughput=15),
    ProviderInfo("fast", "openai", throughput=200),
    ProviderInfo("unknown", "openai"),
    ProviderInfo("also-fast", "openai", throughput=200),
    ProviderInfo("medium", "openai", throughput=60),
]


def _ctx(make_ctx, **settings):
    return make_ctx(providers=PROVIDERS, plugin=throughput, settings=settings)


def test_highest_throughput_at_or_above_minimum(make_ctx) -> None:
    assert throughput.route(_ctx(make_ctx, providers=["slow", "medium"], min_tokens_per_sec=60)) == Route("medium")


def test_empty_providers_means_all(make_ctx) -> None:
    assert throughput.route(_ctx(make_ctx, min_tokens_per_sec=10)) == Route("fast")


def test_below_minimum_passes(make_ctx) -> None:
    assert throughput.route(_ctx(make_ctx, providers=["slow", "medium"], min_tokens_per_sec=100)) is None


def test_ties_to_first(make_ctx) -> None:
    assert throughput.route(_ctx(make_ctx, providers=["also-fast", "fast"])) == Route("also-fast")


def test_missing_throughput_excluded_and_not_loaded_skipped(make_ctx) -> None:
    assert throughput.route(_ctx(make_ctx, providers=["unknown", "gone"])) is None
    assert throughput.route(_ctx(make_ctx, providers=["gone", "unknown", "slow"])) == Route("slow")
