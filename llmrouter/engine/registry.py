"""Plugin discovery and loading.

Plugins are found through the ``llmrouter`` entry point group; a plugin's id is its entry point
name. Built-ins in ``llmrouter_plugins`` are registered through the very same group. pluggy
validates every implementation against :mod:`llmrouter.hookspecs`; request-time dispatch, in
config order, is done by :mod:`llmrouter.engine.pipeline`.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from llmrouter import hookspecs
from llmrouter.engine.plugin_settings import SettingsSpec

log = logging.getLogger("llmrouter.engine.registry")

ENTRY_POINT_GROUP = "llmrouter"
REQUEST_HOOKS: tuple[str, ...] = ("on_start", "classify", "pre_request", "route", "post_response", "on_end",
                                  "classify_response", "stream_transformer")
STARTUP_HOOKS: tuple[str, ...] = ("register_provider_formats", "register_routes", "register_commands")
HOOK_NAMES: tuple[str, ...] = REQUEST_HOOKS + STARTUP_HOOKS


@dataclass(slots=True)
class PluginRecord:
    """One discovered plugin: where it came from and which hooks it implements."""

    id: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    error: str | None = None
    obj: Any = None
    settings: SettingsSpec = field(default_factory=lambda: SettingsSpec(None, frozenset()))

    @property
    def loaded(self) -> bool:
        """Whether the plugin imported and registered without error."""
        return self.error is None and self.obj is not None


@dataclass(slots=True)
class PluginRegistry:
    """Every plugin known to this process, loaded or broken, keyed by id."""

    pm: pluggy.PluginManager
    records: dict[str, PluginRecord] = field(default_factory=dict)
    _formats: tuple[dict[str, Any], dict[str, str]] | None = None

    def provider_formats(self) -> dict[str, Any]:
        """Every registered provider format by name (``register_provider_formats``, called once)."""
        if self._formats is None:
            self._formats = collect_provider_formats(self)
        return self._formats[0]

    def format_problems(self) -> dict[str, str]:
        """Plugins whose formats could not be registered, with the reason."""
        self.provider_formats()
        return self._formats[1] if self._formats is not None else {}

    def register(self, plugin: Any, plugin_id: str, *, distribution: str | None = None,
                 version: str | None = None) -> PluginRecord:
        """Register ``plugin`` (a module or object with hookimpls) under ``plugin_id``.

        A plugin whose hook implementations do not match the hookspecs is recorded with an error
        instead of being registered.
        """
        module = getattr(plugin, "__name__", type(plugin).__name__)
        record = PluginRecord(id=plugin_id, module=module, distribution=distribution, version=version)
        self._formats = None  # registration hooks are asked again with the new plugin
        try:
            record.settings = SettingsSpec.of(plugin)
            if self.pm.get_plugin(plugin_id) is not None:
                self.pm.unregister(name=plugin_id)
            self.pm.register(plugin, name=plugin_id)
            self.pm.check_pending()
        except Exception as exc:  # pluggy.PluginValidationError and friends
            if self.pm.get_plugin(plugin_id) is not None:
                self.pm.unregister(name=plugin_id)
            record.error = f"{type(exc).__name__}: {exc}"
        else:
            record.obj = plugin
            record.hooks = tuple(name for name in HOOK_NAMES if self.impl(plugin_id, name) is not None)
            wrappers = self._wrappers(plugin_id)
            if wrappers:
                # The router dispatches hooks itself, in config order; pluggy wrappers would never run.
                self.pm.unregister(name=plugin_id)
                record.obj, record.hooks = None, ()
                record.error = f"hook wrappers are not supported (wrapper/hookwrapper on {', '.join(wrappers)})"
        self.records[plugin_id] = record
        return record

    def _wrappers(self, plugin_id: str) -> list[str]:
        plugin = self.pm.get_plugin(plugin_id)
        return [name for name in HOOK_NAMES
                for hookimpl in getattr(self.pm.hook, name).get_hookimpls()
                if hookimpl.plugin is plugin and (hookimpl.wrapper or hookimpl.hookwrapper)]

    def impl(self, plugin_id: str, hook_name: str) -> Callable[..., Any] | None:
        """The function implementing ``hook_name`` in plugin ``plugin_id``, or ``None``."""
        plugin = self.pm.get_plugin(plugin_id)
        if plugin is None:
            return None
        for hookimpl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if hookimpl.plugin is plugin:
                return hookimpl.function
        return None

    def suggest(self, plugin_id: str) -> str:
        """A hint for an unknown id: the installed ids closest to it, from every plugin whatever its hooks."""
        ids = sorted(self.records)
        close = difflib.get_close_matches(plugin_id, ids, n=3, cutoff=0.6)
        if close:
            return f"; did you mean {' or '.join(repr(c) for c in close)}? (installed: {', '.join(ids)})"
        return f" (installed: {', '.join(ids) or 'none'})"

    def require(self, plugin_id: str, hook_name: str, where: str) -> Callable[..., Any]:
        """Return the implementation of ``hook_name`` in ``plugin_id`` or raise a clear error.

        ``where`` describes the config location that enables the plugin, for the message.
        """
        record = self.records.get(plugin_id)
        if record is None:
            raise LookupError(f"{where}: no installed plugin with id {plugin_id!r}{self.suggest(plugin_id)}")
        if record.error is not None:
            dist = f" from {record.distribution}" if record.distribution else ""
            raise LookupError(f"{where}: plugin {plugin_id!r}{dist} failed to load: {record.error}")
        function = self.impl(plugin_id, hook_name)
        if function is None:
            raise LookupError(f"{where}: plugin {plugin_id!r} does not implement the {hook_name!r} hook")
        return function


BUILTIN_FORMATS_PLUGIN = "formats"


def collect_provider_formats(registry: PluginRegistry) -> tuple[dict[str, Any], dict[str, str]]:
    """Call every loaded plugin's ``register_provider_formats`` once: ``(formats by name, problems)``.

    The built-in ``formats`` plugin is asked first; a later plugin registering a name that is taken
    is reported in ``problems`` (plugin id -> message) and ignored, as is a plugin whose hook raises
    or returns something that is not a :class:`~llmrouter.formats.provider.ProviderFormat`.
    """
    from llmrouter.formats.provider import ProviderFormat

    formats: dict[str, ProviderFormat] = {}
    owners: dict[str, str] = {}
    problems: dict[str, str] = {}
    ids = sorted(registry.records, key=lambda pid: (pid != BUILTIN_FORMATS_PLUGIN, pid))
    for plugin_id in ids:
        function = registry.impl(plugin_id, "register_provider_formats")
        if function is None:
            continue
        try:
            found = list(function() or ())
            bad = [f for f in found if not isinstance(f, ProviderFormat) or not f.name]
            if bad:
                raise TypeError(f"not a named ProviderFormat: {bad[0]!r}")
        except Exception as exc:
            problems[plugin_id] = f"register_provider_formats failed: {type(exc).__name__}: {exc}"
            log.warning("plugin %r: %s", plugin_id, problems[plugin_id])
            continue
        for fmt in found:
            if fmt.name in formats:
                problems[plugin_id] = f"format {fmt.name!r} is already registered by plugin {owners[fmt.name]!r}"
                log.warning("plugin %r: %s; ignored", plugin_id, problems[plugin_id])
                continue
            formats[fmt.name], owners[fmt.name] = fmt, plugin_id
    return formats, problems


def new_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager with llmrouter's hookspecs added."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_point_plugins(registry: PluginRegistry | None = None, *, quiet: bool = False) -> PluginRegistry:
    """Import every plugin of the ``llmrouter`` entry point group into a registry.

    A plugin that fails to import is recorded (id, distribution, error) and logged (at debug level
    when ``quiet``), never raised: whether that is fatal is decided later, when config enables plugins.
    """
    warn = log.debug if quiet else log.warning
    registry = registry or PluginRegistry(new_plugin_manager())
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if ep.name in registry.records:
            previous = registry.records[ep.name]
            warn("plugin id %r is provided by both %s and %s; keeping %s",
                        ep.name, previous.distribution, dist, previous.distribution)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            warn("plugin %r (distribution %s) failed to load: %s: %s", ep.name, dist, type(exc).__name__, exc)
            registry.records[ep.name] = PluginRecord(
                id=ep.name, module=ep.value, distribution=dist, version=version,
                error=f"{type(exc).__name__}: {exc}",
            )
            continue
        record = registry.register(plugin, ep.name, distribution=dist, version=version)
        if record.error:
            warn("plugin %r (distribution %s) is invalid: %s", ep.name, dist, record.error)
    return registry


def describe(record: PluginRecord) -> dict[str, Any]:
    """A JSON-ready description of a plugin for ``llmrouter plugins``."""
    doc = inspect.getdoc(record.obj) if record.obj is not None else None
    return {
        "id": record.id,
        "module": record.module,
        "distribution": record.distribution,
        "version": record.version,
        "hooks": list(record.hooks),
        "error": record.error,
        "summary": doc.splitlines()[0] if doc else None,
        "settings": record.settings.known_keys() if record.settings.model is not None else None,
        "request_settable": sorted(record.settings.settable),
    }
