"""Fixtures for the built-in plugin unit tests: build a :class:`Context` without the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llmrouter.context import Context, ProviderInfo
from llmrouter.models import ChatRequest, ChatResponse, Message, TextPart

MakeCtx = Callable[..., Context]


@pytest.fixture
def make_ctx() -> MakeCtx:
    """Return a factory building a :class:`Context` from plain keyword arguments.

    ``text`` becomes one user message unless ``request`` is given; ``providers`` is a list of
    :class:`ProviderInfo` (kept in list order); ``settings`` doubles as ``config_settings`` unless
    that is given too.
    """

    def build(
        *,
        model: str = "m",
        text: str = "hello",
        request: ChatRequest | None = None,
        providers: list[ProviderInfo] | None = None,
        settings: dict[str, Any] | None = None,
        config_settings: dict[str, Any] | None = None,
        response: ChatResponse | None = None,
        tags: list[str] | None = None,
        plugin_id: str | None = None,
    ) -> Context:
        req = request or ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text=text)])])
        if tags is not None:
            req.tags = list(tags)
        settings = dict(settings or {})
        return Context(
            request=req,
            request_id="t",
            providers={p.name: p for p in providers or []},
            response=response,
            settings=settings,
            config_settings=dict(settings if config_settings is None else config_settings),
            plugin_id=plugin_id,
        )

    return build
