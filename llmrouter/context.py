"""Objects handed to hooks: :class:`Context`, :class:`Flow`, :class:`Route`, :class:`ProviderInfo` and
the :class:`StreamTransformer` protocol."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llmrouter.models import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    import httpx

_NO_SETTINGS: Mapping[str, Any] = MappingProxyType({})
_no_settings = repeat(_NO_SETTINGS).__next__  # (a default factory in C: _NO_SETTINGS at every call)


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
    capabilities: frozenset[str] | None = None
    model_capabilities: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    def capabilities_of(self, model: str) -> frozenset[str] | None:
        """What ``model`` on this provider can do (``vision``, ``tools``, ``thinking``, ...), or
        ``None`` when nothing is known (routing then treats it as able to do anything).

        Per-model knowledge (configured or discovered) wins over the provider-wide list.
        """
        known = self.model_capabilities.get(model)
        return known if known is not None else self.capabilities


@runtime_checkable
class StreamTransformer(Protocol):
    """What a ``stream_transformer`` hook returns: it sees every canonical stream event of one reply.

    ``feed`` returns the events to pass on in place of ``event`` (the event itself, replacements
    such as ``event.model_copy(update={"text": ...})``, several events, or none to hold or drop it);
    ``finish`` is called once after the last event and returns whatever is still held.
    """

    def feed(self, event: StreamEvent) -> Iterable[StreamEvent]:
        """Events to pass on for ``event``."""

    def finish(self) -> Iterable[StreamEvent]:
        """Events still held when the stream ends."""


@dataclass(slots=True)
class Context:
    """Everything a hook can see about one request.

    ``settings`` is the current plugin's validated, read-only settings (an instance of its
    ``Settings`` model, or a read-only mapping for a plugin without one): the config table overlaid
    by the request's ``plugins`` entry (request-settable keys only), or the rule's table during
    ``route``; ``config_settings`` is the config's settings alone. ``state`` is a dict shared by
    all hooks of this request. ``providers`` maps provider names to :class:`ProviderInfo`. ``key_name`` is
    the name of the virtual key (``[[keys]]``) the request authenticated with, ``"admin"`` for the
    ``[server] api_key_env`` key when virtual keys exist, else None; never the key itself. ``delivered`` is
    true once the client has the reply (a stream has been relayed): edits to ``ctx.response`` after
    that reach neither the client nor the log. ``response_tags`` holds the response classifiers' tags.
    """

    request: ChatRequest
    request_id: str
    providers: Mapping[str, ProviderInfo]
    http: httpx.AsyncClient | None = None
    response: ChatResponse | None = None
    settings: Any = field(default_factory=_no_settings)
    config_settings: Any = field(default_factory=_no_settings)
    state: dict[str, Any] = field(default_factory=dict)
    endpoint: str = ""
    provider: str | None = None
    sent_model: str | None = None
    error: str | None = None
    plugin_id: str | None = None
    modified_by: list[str] = field(default_factory=list)
    stopped_by: str | None = None
    key_name: str | None = None
    delivered: bool = False
    response_tags: list[str] = field(default_factory=list)

    def mark_modified(self, plugin_id: str | None = None) -> None:
        """Record that the current plugin (or ``plugin_id``) changed the request or response."""
        pid = plugin_id or self.plugin_id
        if pid and pid not in self.modified_by:
            self.modified_by.append(pid)
