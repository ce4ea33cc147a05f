"""The plugin registry: validation, wrappers refused, duplicate ids."""

from __future__ import annotations

from typing import Any

import pluggy

from llmrouter import Context, hookimpl
from llmrouter.engine.registry import PluginRegistry, load_entry_point_plugins, new_plugin_manager


def test_valid_plugin_is_registered_with_its_hooks() -> None:
    class Plugin:
        @hookimpl
        def classify(self, ctx: Context) -> list[str]:
            return ["x"]

        @hookimpl
        async def on_end(self, ctx: Context) -> None:
            return None

    registry = PluginRegistry(new_plugin_manager())
    record = registry.register(Plugin(), "p")
    assert record.loaded and record.hooks == ("classify", "on_end")
    assert registry.impl("p", "classify") is not None
    assert registry.impl("p", "route") is None


def test_hook_with_wrong_argument_is_a_load_error() -> None:
    class Bad:
        @hookimpl
        def classify(self, request: Any) -> None:
            return None

    registry = PluginRegistry(new_plugin_manager())
    record = registry.register(Bad(), "bad")
    assert not record.loaded and "request" in record.error
    assert registry.pm.get_plugin("bad") is None


def test_hook_wrappers_are_refused() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def pre_request(self, ctx: Context) -> Any:
            return (yield)

    registry = PluginRegistry(new_plugin_manager())
    record = registry.register(Wrapper(), "wrap")
    assert not record.loaded
    assert record.error == "hook wrappers are not supported (wrapper/hookwrapper on pre_request)"
    assert registry.pm.get_plugin("wrap") is None


def test_unknown_hook_name_is_a_load_error() -> None:
    class Typo:
        @hookimpl
        def on_strat(self, ctx: Context) -> None:
            return None

    registry = PluginRegistry(new_plugin_manager())
    record = registry.register(Typo(), "typo")
    assert not record.loaded and "on_strat" in record.error


def test_builtins_load_from_entry_points() -> None:
    registry = load_entry_point_plugins()
    for plugin_id in ("keyword", "prefix", "fallback", "response-healing", "moderation", "pareto-router"):
        assert registry.records[plugin_id].loaded, registry.records[plugin_id].error
        assert registry.records[plugin_id].distribution == "llmrouter"
    assert isinstance(registry.pm, pluggy.PluginManager)
