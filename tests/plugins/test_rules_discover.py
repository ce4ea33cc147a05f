"""Unit tests for the ``discover`` router rule."""

from __future__ import annotations

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import discover

PROVIDERS = [
    ProviderInfo("ollama", "ollama", models=("llama3.2:latest", "qwen2.5:7b")),
    ProviderInfo("vllm", "openai", models=("qwen2.5:7b", "mistral")),
    ProviderInfo("nothing", "openai"),
]


def _ctx(make_ctx, model, **settings):
    return make_ctx(model=model, providers=PROVIDERS, plugin=discover, settings=settings)


def test_routes_when_the_provider_has_the_model(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "qwen2.5:7b", provider="vllm")) == Route("vllm")
    assert discover.route(_ctx(make_ctx, "mistral", provider="vllm")) == Route("vllm")


def test_passes_when_the_provider_lacks_the_model(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "mistral", provider="ollama")) is None
    assert discover.route(_ctx(make_ctx, "gpt-4o", provider="nothing")) is None


def test_bare_name_matches_the_latest_tag(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "llama3.2", provider="ollama")) == Route("ollama")
    assert discover.route(_ctx(make_ctx, "qwen2.5", provider="ollama")) is None


def test_provider_not_loaded_passes(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "mistral", provider="gone")) is None


def test_providers_list_picks_the_first_that_has_the_model(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "qwen2.5:7b", providers=["gone", "vllm", "ollama"])) == Route("vllm")


def test_no_provider_setting_means_all_loaded(make_ctx) -> None:
    assert discover.route(_ctx(make_ctx, "qwen2.5:7b")) == Route("ollama")
    assert discover.route(_ctx(make_ctx, "mistral")) == Route("vllm")
    assert discover.route(_ctx(make_ctx, "gpt-4o")) is None
