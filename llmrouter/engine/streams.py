"""Plugins on streams: the chain of ``stream_transformer`` objects a streamed reply runs through.

With no transformer for a stream the relay gets the provider's iterator itself (no wrapper, no
per-event cost). Otherwise every event goes through the transformers in config order: what one
returns is fed to the next; at the end each ``finish()`` is called, its output fed on down the
chain. A transformer that raises ends the stream with an error event naming the plugin.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmrouter.context import Context
from llmrouter.models import StreamError, StreamEvent

log = logging.getLogger("llmrouter.engine.streams")

PLUGIN_STREAM_ERROR = "_plugin_stream_error"
"""``ctx.state`` key: the :class:`StreamError` a transformer emitted (not the provider's), so the
relay reports it as the plugin's error, not as a provider failure."""


TRANSFORMED = "_transformed"
"""``ctx.state`` key: set when the stream runs through at least one transformer."""


@dataclass(frozen=True, slots=True)
class Link:
    """One transformer of the chain, with the plugin it came from."""

    plugin_id: str
    transformer: Any


class TransformerFailed(Exception):
    """A transformer raised in ``feed`` or ``finish``."""

    def __init__(self, plugin_id: str, cause: Exception) -> None:
        super().__init__(f"plugin '{plugin_id}' failed: {cause}")
        self.plugin_id = plugin_id


def _call(ctx: Context, link: Link, method: str, *args: Any) -> list[StreamEvent]:
    ctx.plugin_id = link.plugin_id
    try:
        out = getattr(link.transformer, method)(*args)
        return list(out) if out is not None else []
    except Exception as exc:
        raise TransformerFailed(link.plugin_id, exc) from exc
    finally:
        ctx.plugin_id = None


def _push(ctx: Context, chain: list[Link], start: int, events: Iterable[StreamEvent]) -> list[StreamEvent]:
    """Feed ``events`` through ``chain[start:]``; the events that come out of its end."""
    current = list(events)
    for link in chain[start:]:
        if not current:
            break
        nxt: list[StreamEvent] = []
        for event in current:
            nxt.extend(_call(ctx, link, "feed", event))
        current = nxt
    return current


def _note_plugin_errors(ctx: Context, chain: list[Link], source: object, out: list[StreamEvent]) -> None:
    for event in out:
        if isinstance(event, StreamError) and event is not source and PLUGIN_STREAM_ERROR not in ctx.state:
            ctx.state[PLUGIN_STREAM_ERROR] = event


async def transform(ctx: Context, steps: Sequence[Any], events: AsyncIterator[StreamEvent]
                    ) -> AsyncIterator[StreamEvent]:
    """Ask each step's plugin (a pipeline ``Step``: plugin_id, function, settings) for a transformer
    and chain those returned; ``events`` itself when none is. A hook that raises is logged and that
    plugin skipped for this stream."""
    chain: list[Link] = []
    for step in steps:
        ctx.plugin_id, ctx.settings, ctx.config_settings = step.plugin_id, step.settings, step.config_settings
        try:
            transformer = step.function(ctx)
            if inspect.isawaitable(transformer):
                transformer = await transformer
        except Exception as exc:
            log.warning("plugin %r failed in stream_transformer: %s; skipped for this stream",
                        step.plugin_id, exc, exc_info=True)
            continue
        finally:
            ctx.plugin_id = None
        if transformer is not None:
            chain.append(Link(step.plugin_id, transformer))
    if not chain:
        return events
    ctx.state[TRANSFORMED] = True
    return run_chain(ctx, events, chain)


async def run_chain(ctx: Context, events: AsyncIterator[StreamEvent], chain: list[Link]) -> AsyncIterator[StreamEvent]:
    """The events of ``events`` as transformed by ``chain``.

    A transformer's exception becomes a final :class:`StreamError` ``plugin '<id>' failed: ...``
    (recorded as the plugin's error).
    """
    try:
        try:
            async for event in events:
                out = _push(ctx, chain, 0, (event,))
                _note_plugin_errors(ctx, chain, event, out)
                for item in out:
                    yield item
            for index, link in enumerate(chain):
                out = _push(ctx, chain, index + 1, _call(ctx, link, "finish"))
                _note_plugin_errors(ctx, chain, None, out)
                for item in out:
                    yield item
        except TransformerFailed as exc:
            log.warning("stream transformer of plugin %r failed; ending the stream", exc.plugin_id,
                        exc_info=exc.__cause__)
            error = StreamError(message=str(exc), error_type="api_error")
            ctx.state[PLUGIN_STREAM_ERROR] = error
            yield error
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
