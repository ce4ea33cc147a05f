"""Objects handed to hooks: :class:`Context`, :class:`Flow`, :class:`Route` and :class:`ProviderInfo`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmrouter.models import ChatRequest, ChatResponse

if TYPE_CHECKING:
    import httpx


class Flow(enum.Enum):
    """What a hook wants the pipeline to do next. ``None`` from a hook means ``CONTINUE``."""

    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision: send to ``provider``; ``model`` (if set) replaces the requested model."""

    provider: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """Read-only facts about one configured provider, as routers and plugins see them."""

    name: str
    format: str
    cost: float | None = None
    quality: float | None = None
    latency: float | None = None
    throughput: float | None = None
    models: tuple[str, ...] = ()
    healthy: bool = True


@dataclass(slots=True)
class Context:
    """Everything a hook can see about one request.

    ``settings`` is the current plugin's merged settings (config table overlaid by the request's
    ``plugins`` entry), or the rule's table during ``route``; ``config_settings`` is the config
    table alone (for plugins whose policy a request must not weaken). ``state`` is a dict shared by all hooks
    of this request. ``providers`` maps provider names to :class:`ProviderInfo`. ``key_name`` is
    the name of the virtual key (``[[keys]]``) the request authenticated with, ``"admin"`` for the
    ``[server] api_key_env`` key when virtual keys exist, else None; never the key itself.
    """

    request: ChatRequest
    request_id: str
    providers: Mapping[str, ProviderInfo]
    http: httpx.AsyncClient | None = None
    response: ChatResponse | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    config_settings: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    endpoint: str = ""
    provider: str | None = None
    sent_model: str | None = None
    error: str | None = None
    plugin_id: str | None = None
    modified_by: list[str] = field(default_factory=list)
    stopped_by: str | None = None
    key_name: str | None = None

    def mark_modified(self, plugin_id: str | None = None) -> None:
        """Record that the current plugin (or ``plugin_id``) changed the request or response."""
        pid = plugin_id or self.plugin_id
        if pid and pid not in self.modified_by:
            self.modified_by.append(pid)
