"""Unit tests for the ``prefix`` router rule."""

from __future__ import annotations

import pytest

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import prefix

LOCAL = ProviderInfo("local", "openai")


def _ctx(make_ctx, model: str, **settings):
    return make_ctx(model=model, providers=[LOCAL], plugin=prefix, settings=settings)


def test_matching_prefix_routes_and_rewrites(make_ctx) -> None:
    ctx = _ctx(make_ctx, "local/anything", model_prefix="local/", provider="local", rewrite_model="llama3.2-3b")
    assert prefix.route(ctx) == Route("local", "llama3.2-3b")


def test_without_rewrite_model_the_requested_model_is_sent_unchanged(make_ctx) -> None:
    ctx = _ctx(make_ctx, "gpt-4o-mini", model_prefix="gpt-", provider="local")
    assert prefix.route(ctx) == Route("local", None)
    ctx = _ctx(make_ctx, "local/qwen", model_prefix="local/", provider="local", strip_prefix=False)
    assert prefix.route(ctx) == Route("local", None)


def test_strip_prefix_must_be_a_boolean(make_ctx) -> None:
    with pytest.raises(ValueError, match="key 'strip_prefix'"):
        _ctx(make_ctx, "local/q", model_prefix="local/", provider="local", strip_prefix="yes")


def test_strip_prefix_true_strips_the_prefix(make_ctx) -> None:
    ctx = _ctx(make_ctx, "local/qwen2.5:7b", model_prefix="local/", provider="local", strip_prefix=True)
    assert prefix.route(ctx) == Route("local", "qwen2.5:7b")


def test_other_models_pass(make_ctx) -> None:
    assert prefix.route(_ctx(make_ctx, "gpt-4o", model_prefix="local/", provider="local")) is None


def test_prefix_match_is_case_sensitive(make_ctx) -> None:
    assert prefix.route(_ctx(make_ctx, "LOCAL/x", model_prefix="local/", provider="local")) is None


def test_model_equal_to_prefix_passes_when_stripping_leaves_nothing(make_ctx) -> None:
    assert prefix.route(_ctx(make_ctx, "local/", model_prefix="local/", provider="local", strip_prefix=True)) is None
    assert prefix.route(_ctx(make_ctx, "local/", model_prefix="local/", provider="local")) == Route("local", None)
    ctx = _ctx(make_ctx, "local/", model_prefix="local/", provider="local", rewrite_model="m1")
    assert prefix.route(ctx) == Route("local", "m1")


def test_provider_not_loaded_passes(make_ctx) -> None:
    ctx = _ctx(make_ctx, "cloud/x", model_prefix="cloud/", provider="cloud")
    assert prefix.route(ctx) is None


@pytest.mark.parametrize("settings", [{"provider": "local"}, {"model_prefix": "x/"}, {"model_prefix": 3, "provider": "local"}])
def test_missing_or_bad_settings_raise(make_ctx, settings) -> None:
    with pytest.raises(ValueError, match="key '(provider|model_prefix)'"):
        _ctx(make_ctx, "x/y", **settings)  # validated when the settings are loaded
