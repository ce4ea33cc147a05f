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
it, so for streaming requests the footer appears only in the request log.

Example::

    [plugins.signature]
    text = "-- answered by {model} on {provider}"
"""

from __future__ import annotations

from typing import Any

from llmrouter import Context, TextPart, hookimpl

DEFAULT_TEXT = "-- via {provider}"
DEFAULT_SEPARATOR = "\n\n"


@hookimpl
def post_response(ctx: Context) -> None:
    """Append the footer to the last text part of ``ctx.response`` and record the change."""
    text, separator = _read_settings(ctx.settings)
    response = ctx.response
    if response is None or not text or _wants_json(ctx):
        return
    parts = [part for part in response.content if isinstance(part, TextPart)]
    if not parts:
        return
    model = ctx.sent_model or response.model
    footer = text.replace("{provider}", ctx.provider or "?").replace("{model}", model)
    parts[-1].text += separator + footer
    ctx.mark_modified()


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
