"""Plugin ``signature``: appends a footer to every text reply.

The footer is added after the reply's last text part, separated from it by ``separator``. In the
footer, ``{provider}`` and ``{model}`` are replaced by the provider that answered and the model
sent to it. Replies to requests that asked for JSON (``response_format``) and replies without
any text (tool calls only) are left alone, so the plugin never breaks a machine-readable answer.

Settings (``[plugins.signature]``, each of which a request can override with
``"plugins": [{"id": "signature", "text": "..."}]``; both are marked request-settable):

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

from llmrouter import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Context,
    MessageDelta,
    PluginSettings,
    StreamEvent,
    TextPart,
    hookimpl,
    request_settable,
)


class Settings(PluginSettings):
    """``[plugins.signature]``, validated when the router starts; both keys may be set per request."""

    text: str = request_settable("-- via {provider}")
    separator: str = request_settable("\n\n")


@hookimpl
def post_response(ctx: Context) -> None:
    """Append the footer to the last text part of ``ctx.response`` and record the change."""
    settings: Settings = ctx.settings
    response = ctx.response
    if response is None or ctx.delivered or not settings.text or _wants_json(ctx):
        return
    parts = [part for part in response.content if isinstance(part, TextPart)]
    if not parts:
        return
    model = ctx.sent_model or response.model
    footer = settings.text.replace("{provider}", ctx.provider or "?").replace("{model}", model)
    parts[-1].text += settings.separator + footer
    ctx.mark_modified()


@hookimpl
def stream_transformer(ctx: Context) -> FooterStream | None:
    """Add the footer to a streamed reply (``None``, no cost, when there is nothing to add)."""
    settings: Settings = ctx.settings
    if not settings.text or _wants_json(ctx):
        return None
    model = ctx.sent_model or ctx.request.model
    footer = settings.text.replace("{provider}", ctx.provider or "?").replace("{model}", model)
    return FooterStream(ctx, settings.separator + footer)


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

