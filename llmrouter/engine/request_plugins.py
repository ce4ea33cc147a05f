"""What a request's ``plugins`` array may do: switch on plugins the operator allows, and overlay the
settings each plugin marks request-settable, validated like the config (docs/plugins.md explains
why everything else is refused)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter.config import Config, ConfigError
from llmrouter.engine.plugin_settings import SettingsProblem
from llmrouter.engine.registry import PluginRegistry
from llmrouter.errors import InvalidRequest
from llmrouter.models import ChatRequest


class RequestPlugins:
    """The per-request plugin rules of one config: ``[server] request_plugins`` (checked when built)
    and the config sections that enable plugins (``enabled``: section name -> plugin ids)."""

    def __init__(self, config: Config, registry: PluginRegistry, enabled: Mapping[str, frozenset[str]]) -> None:
        self.config = config
        self.registry = registry
        self.enabled = enabled
        self.allowed = self._allowed()

    def _allowed(self) -> frozenset[str]:
        """``[server] request_plugins``, each checked to be an installed plugin.

        :raises ConfigError: naming the entry.
        """
        for i, plugin_id in enumerate(self.config.server.request_plugins):
            record = self.registry.records.get(plugin_id)
            if record is None or not record.loaded:
                where = f"{self.config.source}: [server] key 'request_plugins' (entry #{i + 1})"
                try:
                    self.registry.require(plugin_id, "on_start", where)
                except LookupError as exc:
                    raise ConfigError(str(exc).split(" (plugins with")[0]) from None
        return frozenset(self.config.server.request_plugins)

    def _config_table(self, plugin_id: str) -> tuple[str, Mapping[str, Any]] | None:
        """The config section and table enabling ``plugin_id``, if any."""
        for section, ids in self.enabled.items():
            if plugin_id in ids:
                table = getattr(self.config, section)[plugin_id]
                return section, {k: v for k, v in table.items() if k != "enabled"}
        return None

    def overrides(self, request: ChatRequest) -> dict[str, Any]:
        """The request's ``plugins`` entries, checked and validated: plugin id -> merged settings.

        Only plugins enabled in the config or listed in ``[server] request_plugins`` may be named, and
        only keys the plugin marks request-settable may be set.

        :raises InvalidRequest: (400) naming the entry and the plugin or key.
        """
        overrides: dict[str, Any] = {}
        for i, entry in enumerate(request.plugins):
            plugin_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(plugin_id, str) or not plugin_id:
                raise InvalidRequest(f"plugins[{i}].id: each plugins entry needs a string 'id'")
            record = self.registry.records.get(plugin_id)
            if record is None:
                raise InvalidRequest(f"plugins[{i}].id: unknown plugin {plugin_id!r}")
            if not record.loaded:
                raise InvalidRequest(f"plugins[{i}].id: plugin {plugin_id!r} failed to load: {record.error}")
            configured = self._config_table(plugin_id)
            if entry.get("enabled", True) is False:
                # Operator policy (e.g. moderation) is not the client's to switch off.
                if configured is not None:
                    raise InvalidRequest(f"plugins[{i}].enabled: a request cannot disable plugin {plugin_id!r}, "
                                         "which the config enables")
                continue
            if configured is None and plugin_id not in self.allowed:
                raise InvalidRequest(f"plugins[{i}].id: plugin {plugin_id!r} cannot be enabled per request "
                                     "(it is not enabled in the config nor listed in [server] request_plugins)")
            overlay = {k: v for k, v in entry.items() if k not in ("id", "enabled")}
            spec = record.settings
            refused = spec.not_settable(overlay)
            if refused:
                allowed = ", ".join(sorted(spec.settable)) or "none"
                raise InvalidRequest(f"plugins[{i}].{refused[0]}: setting {refused[0]!r} of plugin {plugin_id!r} "
                                     f"cannot be set per request (request-settable: {allowed})")
            if configured is not None and not overlay:
                continue
            base = configured[1] if configured is not None else {}
            try:
                overrides[plugin_id] = spec.load({**base, **overlay})
            except SettingsProblem as exc:
                raise InvalidRequest(f"plugins[{i}] (plugin {plugin_id!r}): {exc}") from None
        return overrides
