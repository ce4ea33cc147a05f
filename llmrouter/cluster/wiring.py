"""Putting the cluster together: one node, its event bus, shared breakers and shared models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmrouter.cluster.bus import ClusterEventBus
from llmrouter.cluster.node import ClusterNode
from llmrouter.cluster.state import SharedBreakers, SharedModels
from llmrouter.config import ClusterConfig, ConfigError

if TYPE_CHECKING:
    from llmrouter.web.reload import Live


class Cluster:
    """Everything one process shares with the rest of the cluster.

    Create it before the app's generation (the bus and the model store go into it), then
    :meth:`bind` it to the :class:`~llmrouter.web.reload.Live` holder, then :meth:`start` it on the
    running loop and :meth:`stop` it on shutdown.
    """

    def __init__(self, config: ClusterConfig) -> None:
        """:raises ConfigError: when the ``redis`` package is not installed."""
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigError("[cluster] key 'redis_url': needs the redis package: "
                              "pip install 'llmrouter[redis]'") from None
        self.node = ClusterNode(config)
        self.bus = ClusterEventBus(self.node, history=max(config.history, 1))
        self._live: Live | None = None
        self.models = SharedModels(self.node, lambda: self._require_live().current.discovery)
        self.breakers = SharedBreakers(self.node, lambda: self._require_live().builder.reliability)  # type: ignore[arg-type, return-value]

    def _require_live(self) -> Live:
        assert self._live is not None, "Cluster.bind() was not called"
        return self._live

    def bind(self, live: Live) -> None:
        """Share ``live``'s circuit breakers and discovered models."""
        self._live = live
        reliability = live.builder.reliability
        assert reliability is not None
        reliability.shared = self.breakers.changed

    def start(self) -> None:
        """Connect in the background; the router serves on local state until Redis answers."""
        self.node.start()

    async def stop(self) -> None:
        """Flush queued events (briefly) and disconnect."""
        await self.node.stop()

    def snapshot(self) -> dict[str, Any]:
        """The node's state for ``/health``."""
        return self.node.snapshot()
