"""The package's plugins are found through the ``llmrouter`` entry point group, under their ids."""

from __future__ import annotations

from llmrouter.testing import installed_plugins

EXPECTED = {"shouting": ["classify"], "prompt-length": ["route"],
            "signature": ["post_response", "stream_transformer"]}


def test_each_plugin_is_installed_under_its_own_id() -> None:
    registry = installed_plugins()
    for plugin_id, hooks in EXPECTED.items():
        record = registry.records[plugin_id]
        assert record.error is None, record.error
        assert record.distribution == "llmrouter-example-plugin"
        assert record.module.startswith("llmrouter_example_plugin.")
        assert list(record.hooks) == hooks
