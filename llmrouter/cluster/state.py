"""Circuit breakers and discovered models shared through Redis.

Breakers: when a circuit opens or closes on one instance, the change is published to every other
instance, which adopts it (an open circuit opens everywhere for the rest of its cooldown; a closed
one closes everywhere), and kept in the hash ``<prefix>:breakers`` so an instance that joins later,
or rejoins after an outage, starts from the cluster's state. Failures are counted per instance; the
decision to open is shared. Breakers are addressed by an opaque key (the breaker's name: a provider
name, or whatever key the reliability layer uses), so the store does not care how they are keyed.

Models: a successful discovery is published (every instance adopts the list) and kept in the hash
``<prefix>:models`` with its time, so an instance whose turn comes while a fresh list exists uses
it instead of asking the provider again, and an instance whose query fails uses the cluster's last
good list.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llmrouter.cluster.node import ClusterNode, Message
from llmrouter.config import ProviderConfig
from llmrouter.jsonutil import dumps, loads
from llmrouter.observe.events import now_ms

if TYPE_CHECKING:
    from llmrouter.upstream.circuits import CircuitBreaker
    from llmrouter.upstream.discovery import Discovered, ModelDiscovery
    from llmrouter.upstream.reliability import Reliability

log = logging.getLogger("llmrouter.cluster")

BREAKER = "breaker"
MODELS = "models"


class SharedBreakers:
    """Publishes this instance's circuit changes and adopts everyone else's.

    :param reliability: returns the reliability layer in use (it may be replaced by a reload).
    """

    def __init__(self, node: ClusterNode, reliability: Callable[[], Reliability]) -> None:
        self.node = node
        self._reliability = reliability
        self._hash = node.key("breakers")
        node.on(BREAKER, self._remote)
        node.on_join(self._load)

    def changed(self, breaker: CircuitBreaker) -> None:
        """A local breaker opened or closed: tell the cluster (fire-and-forget)."""
        state = str(breaker.state)
        if state == "half_open":
            return
        # The key is opaque here: a provider name, or a provider-and-model key where breakers are
        # per model; provider and model travel along for a receiver that creates breakers lazily.
        key = str(getattr(breaker, "key", breaker.name))
        body = {"key": key, "provider": getattr(breaker, "provider", breaker.name),
                "model": getattr(breaker, "model", None), "state": state, "failures": breaker.failures,
                "until_ms": now_ms() + int(breaker.retry_in() * 1000)}
        self.node.publish(self.node.message(BREAKER, body))
        if state == "open":
            self.node.send("hset", self._hash, key, dumps(body))
        else:
            self.node.send("hdel", self._hash, key)

    def _adopt(self, body: dict[str, Any]) -> None:
        retry_in = max(0.0, (int(body.get("until_ms") or 0) - now_ms()) / 1000)
        if body.get("state") == "open" and retry_in <= 0:
            return  # the cooldown is over: the next request probes it here as it would there
        self._reliability().adopt(str(body["key"]), str(body["state"]), retry_in, int(body.get("failures") or 0),
                                  provider=body.get("provider"), model=body.get("model"))

    def _remote(self, message: Message) -> None:
        self._adopt(message)

    async def _load(self, client: Any) -> None:
        for raw in (await client.hgetall(self._hash)).values():
            try:
                self._adopt(loads(raw))
            except (ValueError, KeyError, TypeError):
                continue


def provider_key(provider: ProviderConfig) -> str:
    """Who a provider is across instances: its name and where it lives (two configs may reuse a name)."""
    digest = hashlib.sha256(f"{provider.format}|{provider.base_url}".encode()).hexdigest()[:12]
    return f"{provider.name}|{digest}"


class SharedModels:
    """Discovered model lists shared by every instance (see :class:`~llmrouter.upstream.discovery.ModelDiscovery`).

    :param discovery: returns the discovery in use (it may be replaced by a reload).
    """

    def __init__(self, node: ClusterNode, discovery: Callable[[], ModelDiscovery]) -> None:
        self.node = node
        self._discovery = discovery
        self._hash = node.key("models")
        node.on(MODELS, self._remote)

    async def fresh(self, provider: ProviderConfig, max_age_s: float) -> Discovered | None:
        """The cluster's discovery for ``provider`` if another instance made it within ``max_age_s``."""
        entry = await self._get(provider)
        if entry is None or now_ms() - entry[1] > max_age_s * 1000:
            return None
        return entry[0]

    async def latest(self, provider: ProviderConfig) -> Discovered | None:
        """The cluster's last good discovery for ``provider``, however old (None when there is none)."""
        entry = await self._get(provider)
        return entry[0] if entry is not None else None

    def put(self, provider: ProviderConfig, models: tuple[str, ...],
            capabilities: Mapping[str, frozenset[str]]) -> None:
        """Share what this instance discovered (fire-and-forget)."""
        body = {"key": provider_key(provider), "provider": provider.name, "models": list(models),
                "capabilities": {model: sorted(caps) for model, caps in capabilities.items()}, "ts_ms": now_ms()}
        self.node.publish(self.node.message(MODELS, body))
        self.node.send("hset", self._hash, body["key"], dumps(body))

    async def _get(self, provider: ProviderConfig) -> tuple[Discovered, int] | None:
        # At start-up discovery runs while the node is still connecting: give it that long.
        await self.node.ready(self.node.config.connect_timeout_s)
        raw = await self.node.read("hget", self._hash, provider_key(provider))
        if raw is None:
            return None
        try:
            body = loads(raw)
            return _discovered(body), int(body["ts_ms"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _remote(self, message: Message) -> None:
        discovery = self._discovery()
        name = message.get("provider")
        provider = discovery.providers.get(name) if isinstance(name, str) else None
        if provider is None or provider_key(provider) != message.get("key"):
            return
        try:
            discovery.adopt(provider.name, _discovered(message))
        except (KeyError, TypeError, AttributeError):
            log.warning("cluster: ignoring an unreadable model list for provider %r", name)


def _discovered(body: Mapping[str, Any]) -> Discovered:
    """Models and capabilities from a shared discovery body."""
    caps = body.get("capabilities") or {}
    return (tuple(str(m) for m in body["models"]),
            {str(model): frozenset(str(c) for c in names) for model, names in caps.items()})
