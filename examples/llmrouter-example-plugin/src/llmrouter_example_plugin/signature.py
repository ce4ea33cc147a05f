"""Plugin ``signature``: appends a footer to every text reply.

The footer is added after the reply's last text part, separated from it by ``separator``. In the
footer, ``{provider}`` and ``{model}`` are replaced by the provider that answered and the model
sent to it. Replies to requests that asked for JSON (``response_format``) and replies without
any text (tool calls only) are left alone, so the plugin never breaks a machine-readable answer.

Settings (``[plugins.signature]``, each of which a request can override with
``"plugins": [{"id": "signature", "text": "..."}]``):

``text`` (default ``"-- via {provider}"``)
    The footer. An empty string turns the plugin off, for example for one request.
``separator`` (default two newlines)
    What goes between the reply and the footer.

Streaming: ``post_response`` runs once a streamed reply is complete, after the client received
it, so streamed replies get their footer from ``stream_transformer`` instead: one more text block
at the end of the reply, sent before the stream ends.

Example::

    [plugins.signature]
    text = "-- answered by {model} on {provider}"
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmrouter import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Context,
    MessageDelta,
    StreamEvent,
    TextPart,
    hookimpl,
)

DEFAULT_TEXT = "-- via {provider}"
DEFAULT_SEPARATOR = "\n\n"


@hookimpl
def post_response(ctx: Context) -> None:
    """Append the footer to the last text part of ``ctx.response`` and record the change."""
    text, separator = _read_settings(ctx.settings)
    response = ctx.response
    if response is None or ctx.delivered or not text or _wants_json(ctx):
        return
    parts = [part for part in response.content if isinstance(part, TextPart)]
    if not parts:
        return
    model = ctx.sent_model or response.model
    footer = text.replace("{provider}", ctx.provider or "?").replace("{model}", model)
    parts[-1].text += separator + footer
    ctx.mark_modified()


@hookimpl
def stream_transformer(ctx: Context) -> FooterStream | None:
    """Add the footer to a streamed reply (``None``, no cost, when there is nothing to add)."""
    text, separator = _read_settings(ctx.settings)
    if not text or _wants_json(ctx):
        return None
    model = ctx.sent_model or ctx.request.model
    footer = text.replace("{provider}", ctx.provider or "?").replace("{model}", model)
    return FooterStream(ctx, separator + footer)


class FooterStream:
    """Passes every event on; before the reply's closing ``MessageDelta`` adds a text block with
    the footer, if the reply had any text."""

    def __init__(self, ctx: Context, footer: str) -> None:
        self.ctx = ctx
        self.footer = footer
        self.had_text = False
        self.next_index = 0

    def feed(self, event: StreamEvent) -> Iterable[StreamEvent]:
        if isinstance(event, BlockStart):
            self.next_index = max(self.next_index, event.index + 1)
            self.had_text = self.had_text or isinstance(event.part, TextPart)
        if isinstance(event, MessageDelta) and self.had_text:
            self.had_text = False  # one footer per reply
            self.ctx.mark_modified()
            index = self.next_index
            return [BlockStart(index=index, part=TextPart(text="")),
                    BlockDelta(index=index, text=self.footer), BlockStop(index=index), event]
        return [event]

    def finish(self) -> Iterable[StreamEvent]:
        return []


def _wants_json(ctx: Context) -> bool:
    """Whether the client asked for a JSON reply (a footer would make it invalid)."""
    fmt = ctx.request.response_format
    return fmt is not None and fmt.type in ("json_object", "json_schema")


def _read_settings(settings: dict[str, Any]) -> tuple[str, str]:
    """Validate the settings; a bad value is logged as a warning and the reply is left alone."""
    text = settings.get("text", DEFAULT_TEXT)
    separator = settings.get("separator", DEFAULT_SEPARATOR)
    if not isinstance(text, str):
        raise ValueError(f"signature: 'text' must be a string, got {text!r}")
    if not isinstance(separator, str):
        raise ValueError(f"signature: 'separator' must be a string, got {separator!r}")
    return text, separator
