"""Unit tests for the ``tag`` router rule."""

from __future__ import annotations

import pytest

from llmrouter.context import ProviderInfo, Route
from llmrouter_plugins.rules import tag

CODER = ProviderInfo("coder", "openai")


def _ctx(make_ctx, tags, **settings):
    return make_ctx(tags=tags, providers=[CODER], plugin=tag, settings=settings)


def test_request_with_the_tag_routes(make_ctx) -> None:
    assert tag.route(_ctx(make_ctx, ["vision", "code"], tag="code", provider="coder")) == Route("coder", None)


def test_rewrite_model(make_ctx) -> None:
    ctx = _ctx(make_ctx, ["code"], tag="code", provider="coder", rewrite_model="qwen-coder")
    assert tag.route(ctx) == Route("coder", "qwen-coder")


def test_request_without_the_tag_passes(make_ctx) -> None:
    assert tag.route(_ctx(make_ctx, ["vision"], tag="code", provider="coder")) is None
    assert tag.route(_ctx(make_ctx, [], tag="code", provider="coder")) is None


def test_provider_not_loaded_passes(make_ctx) -> None:
    assert tag.route(_ctx(make_ctx, ["code"], tag="code", provider="cloud")) is None


def test_missing_tag_setting_raises(make_ctx) -> None:
    with pytest.raises(ValueError, match="'tag'"):
        tag.route(_ctx(make_ctx, ["code"], provider="coder"))
