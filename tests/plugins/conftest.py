"""Fixtures for the built-in plugin unit tests: build a :class:`Context` without the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pytest

from llmrouter.context import Context, ProviderInfo
from llmrouter.models import ChatRequest, ChatResponse, Message, TextPart
from llmrouter.testing import load_settings

MakeCtx = Callable[..., Context]


def _entry_point_plugin(plugin_id: str) -> Any:
    """The plugin registered under ``plugin_id`` in the ``llmrouter`` group (None if there is none)."""
    found = [ep for ep in entry_points(group="llmrouter") if ep.name == plugin_id]
    return found[0].load() if found else None


@pytest.fixture
def make_ctx() -> MakeCtx:
    """Return a factory building a :class:`Context` from plain keyword arguments.

    ``text`` becomes one user message unless ``request`` is given; ``providers`` is a list of
    :class:`ProviderInfo` (kept in list order); ``settings`` doubles as ``config_settings`` unless
    that is given too. With ``plugin`` (the plugin module), settings given as dicts are validated
    against its ``Settings`` exactly as the router does at load (:func:`llmrouter.testing.load_settings`).
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
        plugin: Any = None,
    ) -> Context:
        req = request or ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text=text)])])
        if tags is not None:
            req.tags = list(tags)
        owner = plugin if plugin is not None or plugin_id is None else _entry_point_plugin(plugin_id)

        def bind(table: Any) -> Any:
            if table is None:
                table = {}
            if owner is None or not isinstance(table, dict):
                return table
            return load_settings(owner, table)

        bound = bind(settings)
        return Context(
            request=req,
            request_id="t",
            providers={p.name: p for p in providers or []},
            response=response,
            settings=bound,
            config_settings=bound if config_settings is None else bind(config_settings),
            plugin_id=plugin_id,
        )

    return build
