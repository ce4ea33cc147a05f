"""Everything ``serve`` checks before listening, without serving: ``llmrouter check`` and tests use it."""

from __future__ import annotations

import os
from collections.abc import Mapping

from llmrouter.config import Config
from llmrouter.engine.pipeline import Pipeline
from llmrouter.engine.registry import PluginRegistry, load_entry_point_plugins
from llmrouter.observe.events import EventBus
from llmrouter.upstream.providers import build_providers, check_formats


def validate_config(config: Config, registry: PluginRegistry | None = None,
                    environ: Mapping[str, str] | None = None) -> Pipeline:
    """Check provider formats, plugin and rule settings and references; return the (unserved) pipeline.

    :raises ConfigError: naming the file, the table and the key of the first problem.
    """
    registry = registry or load_entry_point_plugins()
    formats = registry.provider_formats()
    check_formats(config, formats, registry.format_problems())
    providers = build_providers(config, dict(os.environ if environ is None else environ), formats)
    return Pipeline(config, registry, providers, EventBus(history=0))
