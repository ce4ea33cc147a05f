"""Every built-in is reachable through its entry point and is a valid pluggy plugin."""

from __future__ import annotations

from importlib.metadata import entry_points

import pluggy
import pytest

from llmrouter import hookspecs

EXPECTED_HOOKS = {
    "keyword": {"classify"},
    "prefix": {"route"},
    "tag": {"route"},
    "price": {"route"},
    "latency": {"route"},
    "throughput": {"route"},
    "fallback": {"route"},
    "discover": {"route"},
    "random": {"route"},
    "response-healing": {"post_response", "stream_transformer"},
    "moderation": {"pre_request", "post_response", "stream_transformer"},
    "pareto-router": {"pre_request"},
    "refusal": {"classify_response"},
    "formats": {"register_provider_formats"},
}


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="llmrouter") if ep.value.startswith("llmrouter_plugins.")}


def test_every_builtin_has_an_entry_point() -> None:
    assert set(_entry_points()) == set(EXPECTED_HOOKS)


@pytest.mark.parametrize("plugin_id", sorted(EXPECTED_HOOKS))
def test_builtin_registers_with_pluggy_and_implements_its_hooks(plugin_id: str) -> None:
    module = _entry_points()[plugin_id].load()
    pm = pluggy.PluginManager("llmrouter")
    pm.add_hookspecs(hookspecs)
    pm.register(module, name=plugin_id)
    pm.check_pending()
    implemented = {impl_hook.name for impl_hook in pm.get_hookcallers(module)}
    assert implemented == EXPECTED_HOOKS[plugin_id]
    assert module.__doc__ and "Example::" in module.__doc__
