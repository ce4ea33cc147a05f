"""Hot reload: ``SIGHUP`` or ``POST /admin/reload`` re-reads the config file without a restart.

A loaded config is a :class:`Generation`: the config, its pipeline (plugins, router chain,
providers) and its model discovery. :class:`Live` holds the current one. Each request takes the
current generation when it starts and keeps it to the end, so in-flight requests finish on the
config they started with while new requests use the new one. A config that fails to load or
validate is refused, with the reason logged and returned; the current generation stays.

What stays across reloads: the listening socket, the inbound key, the upstream connection pool, the
request log, the event bus, the cluster link and circuit breakers (breakers of providers that remain
keep their state), virtual keys. Changes to ``[server]`` (except the per-request limits),
``[logging]``, ``[[keys]]``, ``[cluster]``, ``[metrics]``, ``[tracing]`` and ``[responses]`` are
reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmrouter.config import DEFAULT_CONFIG_NAME, Config, ConfigError, load_config
from llmrouter.engine.pipeline import Pipeline
from llmrouter.engine.registry import PluginRegistry
from llmrouter.observe.events import EventBackend
from llmrouter.upstream.discovery import ModelDiscovery, SharedModelStore
from llmrouter.upstream.providers import build_providers, check_formats
from llmrouter.upstream.reliability import Reliability

log = logging.getLogger("llmrouter.reload")

#: ``[server]`` keys read per request; the others are bound when the server starts.
_LIVE_SERVER_KEYS = frozenset({"max_messages", "max_json_depth", "shutdown_grace_s"})


def config_hash(config: Config) -> str:
    """A short digest of the effective config (the validated values, not the file's spelling)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(eq=False)
class Generation:
    """One loaded config and what was built from it."""

    config: Config
    pipeline: Pipeline
    discovery: ModelDiscovery
    loaded_at: float = field(default_factory=time.time)
    hash: str = ""

    def __post_init__(self) -> None:
        self.hash = self.hash or config_hash(self.config)

    def describe(self) -> dict[str, Any]:
        """``source``, ``hash`` and ``loaded_at`` (ISO 8601 UTC), for ``/health`` and the admin reply."""
        loaded = datetime.datetime.fromtimestamp(self.loaded_at, datetime.UTC)
        return {"source": self.config.source, "hash": self.hash,
                "loaded_at": loaded.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


class Builder:
    """Builds generations: everything a config needs that is not shared across reloads."""

    def __init__(self, registry: PluginRegistry, environ: Mapping[str, str], bus: EventBackend,
                 shared_models: SharedModelStore | None = None, *, tracing: Any = None) -> None:
        self.registry = registry
        self.environ = dict(environ)
        self.bus = bus
        self.shared_models = shared_models
        self.tracing = tracing
        #: Created with the first generation and kept: breakers outlive reloads.
        self.reliability: Reliability | None = None

    def build(self, config: Config) -> Generation:
        """A generation for ``config``; :raises ConfigError: when the config cannot be served."""
        formats = self.registry.provider_formats()
        check_formats(config, formats, self.registry.format_problems())
        providers = build_providers(config, self.environ, formats)
        discovery = ModelDiscovery(self.shared_models, formats)
        reliability = self.reliability
        tracing = self.tracing
        if tracing is None:  # tracing off: the plain classes, OpenTelemetry never imported
            if reliability is None:
                reliability = self.reliability = Reliability(config, providers, self.bus)
            pipeline = Pipeline(config, self.registry, providers, self.bus, discovered=discovery.models,
                                provider_call=reliability.complete, stream_call=reliability.stream,
                                gate=reliability, capabilities=discovery.capabilities)
        else:
            from llmrouter.engine.traced import TracedPipeline
            from llmrouter.observe.tracing import TracedReliability

            if reliability is None:
                reliability = self.reliability = TracedReliability(config, providers, self.bus, tracing=tracing)
            pipeline = TracedPipeline(config, self.registry, providers, self.bus, discovered=discovery.models,
                                      provider_call=reliability.complete, stream_call=reliability.stream,
                                      gate=reliability, tracing=tracing, capabilities=discovery.capabilities)
        return Generation(config, pipeline, discovery)


class Live:
    """The current generation, and the reload that replaces it."""

    def __init__(self, current: Generation, builder: Builder) -> None:
        self.current = current
        self.builder = builder
        self.reloads = 0
        self.last_error: str | None = None
        #: Called after a successful reload asked with ``tell_siblings`` (workers tell their siblings).
        self.on_reloaded: Callable[[], None] | None = None
        self._retired: list[Generation] = []
        self._lock = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        """Requests in flight across the current and the retired generations."""
        self._retired = [g for g in self._retired if g.pipeline.in_flight > 0]
        return self.current.pipeline.in_flight + sum(g.pipeline.in_flight for g in self._retired)

    def describe(self) -> dict[str, Any]:
        """The current config's source, hash and load time, the reload count and the last refusal."""
        return {**self.current.describe(), "reloads": self.reloads, "last_error": self.last_error}

    async def reload(self, reason: str, *, tell_siblings: bool = False) -> dict[str, Any]:
        """Re-read the config file; returns ``{"status": "reloaded"|"unchanged"|"refused", ...}``.

        ``tell_siblings``: after a successful reload, call :attr:`on_reloaded` (a worker started by
        ``--workers`` passes the reload on to the other workers that way).
        """
        async with self._lock:
            result = await self._reload(reason)
        if tell_siblings and result["status"] == "reloaded" and self.on_reloaded is not None:
            self.on_reloaded()
        return result

    async def _reload(self, reason: str) -> dict[str, Any]:
        old = self.current
        source = old.config.source
        try:
            config = load_config(None if source == DEFAULT_CONFIG_NAME else source)
            # Start-up settings the command line may override stay as serving set them: the socket
            # (--host, --port) and the access log (--quiet); changing them takes a restart.
            running = old.config.server
            config.server.host, config.server.port = running.host, running.port
            config.server.access_log = running.access_log
            if config_hash(config) == old.hash:
                log.info("config reload (%s): %s unchanged (hash %s)", reason, source, old.hash)
                return {"status": "unchanged", "config": self.describe()}
            new = self.builder.build(config)
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("config reload (%s) refused: %s; still serving the config loaded at %s (hash %s)",
                      reason, exc, old.describe()["loaded_at"], old.hash)
            return {"status": "refused", "error": str(exc), "config": self.describe()}
        restart = restart_required(old.config, config)
        pipeline = new.pipeline
        pipeline.http, pipeline.request_log = old.pipeline.http, old.pipeline.request_log
        pipeline.keys = old.pipeline.keys  # virtual keys and their limiter are bound at start
        pipeline.metrics = old.pipeline.metrics
        kept = {name: models for name, models in old.discovery.models.items() if name in pipeline.providers}
        new.discovery.models.update(kept)
        new.discovery.capabilities.update({name: caps for name, caps in old.discovery.capabilities.items()
                                           if name in pipeline.providers})
        assert self.builder.reliability is not None
        self.builder.reliability.reconfigure(config, pipeline.providers)
        if pipeline.http is not None:
            new.discovery.start(pipeline.http, [(p.config, p.api_key) for p in pipeline.providers.values()
                                                if not p.format.offline])
        self.current = new
        self._retired.append(old)
        self.reloads += 1
        self.last_error = None
        await old.discovery.stop()
        log.info("config reload (%s): %s loaded (hash %s -> %s); %d request(s) finish on the old config",
                 reason, source, old.hash, new.hash, old.pipeline.in_flight)
        if restart:
            log.warning("config reload: %s changed; restart the router for that to take effect", ", ".join(restart))
        return {"status": "reloaded", "previous_hash": old.hash, "restart_required": restart,
                "config": self.describe()}


def restart_required(old: Config, new: Config) -> list[str]:
    """The ``[table] key`` names whose change a reload cannot apply."""
    changed = []
    for key, value in new.server.model_dump().items():
        if key not in _LIVE_SERVER_KEYS and getattr(old.server, key) != value:
            changed.append(f"[server] {key}")
    for table in ("logging", "cluster", "metrics", "tracing", "responses"):
        old_t, new_t = getattr(old, table).model_dump(), getattr(new, table).model_dump()
        changed.extend(f"[{table}] {k}" for k, v in new_t.items() if old_t.get(k) != v)
    if [k.model_dump() for k in old.keys] != [k.model_dump() for k in new.keys]:
        changed.append("[[keys]]")
    return changed
