"""Router rule ``prompt-length``: sends long prompts to a provider of your choice.

The length of a request is the number of characters in all of its text: the system prompt, the
text parts of every message and the text of tool results (images and tool-call arguments are not
counted). A request at least ``min_chars`` long is routed to ``provider``; a shorter one, or any
request while ``provider`` is not loaded (for example because its API key is missing), passes to
the next rule.

Settings (one ``[[routers]]`` table):

``provider`` (required)
    Where long requests go.
``min_chars`` (required)
    The length, in characters, from which a request counts as long.
``rewrite_model`` (optional)
    The model sent upstream instead of the requested one.

Example::

    [[routers]]
    type = "prompt-length"
    min_chars = 20000
    provider = "big-context"
    rewrite_model = "gemini-2.5-pro"
"""

from __future__ import annotations

from typing import Any

from llmrouter import Context, Route, hookimpl


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to ``provider`` when the request's text is at least ``min_chars`` long."""
    provider, min_chars, rewrite_model = _read_settings(ctx.settings)
    if provider not in ctx.providers:
        return None
    if request_length(ctx) < min_chars:
        return None
    return Route(provider, rewrite_model)


def request_length(ctx: Context) -> int:
    """Characters of text in the request (system prompt, text parts, tool results)."""
    return sum(len(text) for text in ctx.request.iter_text())


def _read_settings(settings: dict[str, Any]) -> tuple[str, int, str | None]:
    """Validate the rule's table; a bad value fails the request with a message naming the key."""
    provider = settings.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ValueError("prompt-length: key 'provider' must be a non-empty string")
    min_chars = settings.get("min_chars")
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
        raise ValueError(f"prompt-length: key 'min_chars' must be a whole number >= 0, got {min_chars!r}")
    rewrite_model = settings.get("rewrite_model")
    if rewrite_model is not None and not isinstance(rewrite_model, str):
        raise ValueError("prompt-length: key 'rewrite_model' must be a string")
    return provider, min_chars, rewrite_model or None
