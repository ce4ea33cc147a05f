"""Response classifier ``refusal``: tags replies in which the model declines to help.

A reply is tagged when its stop reason is ``refusal`` (Anthropic's, or a moderation plugin's), or
when one of the ``phrases`` occurs, as a case-insensitive substring, in the first ``max_chars``
characters of its text (refusals open a reply; a long answer that merely quotes one further down
is not a refusal). Typographic apostrophes count as plain ones, so ``I can’t`` matches ``I can't``.

Settings (``[response_classifiers.refusal]``):

``phrases``
    The phrases to look for; replaces the defaults (:data:`DEFAULT_PHRASES`).
``tag`` (default ``"refusal"``)
    The tag to add.
``max_chars`` (default ``2000``)
    How much of the reply's text is searched.

Example::

    [response_classifiers.refusal]
    enabled = true
    phrases = ["I can't help with that", "I cannot assist", "as an AI"]
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr

from llmrouter.context import Context
from llmrouter.hookspecs import hookimpl
from llmrouter.models import TextPart
from llmrouter.settings import PluginSettings

DEFAULT_PHRASES: tuple[str, ...] = (
    "I can't help with that",
    "I cannot help with that",
    "I can't assist",
    "I cannot assist",
    "I'm unable to help",
    "I am unable to help",
    "I'm not able to help",
    "I can't provide",
    "I cannot provide",
    "I won't be able to help",
    "I must decline",
    "I'm sorry, but I can't",
    "I'm sorry, but I cannot",
)
DEFAULT_TAG = "refusal"
DEFAULT_MAX_CHARS = 2000


class Settings(PluginSettings):
    """``[response_classifiers.refusal]``; the phrases are case-folded once, when it is validated."""

    phrases: tuple[str, ...] = DEFAULT_PHRASES
    tag: str = Field(default=DEFAULT_TAG, min_length=1)
    max_chars: int = Field(default=DEFAULT_MAX_CHARS, gt=0)
    _folded: tuple[str, ...] = PrivateAttr(())

    def model_post_init(self, context: Any) -> None:
        """Case-fold the phrases and normalise their apostrophes; empty ones are dropped."""
        self._folded = tuple(_normalise(p) for p in self.phrases if p.strip())


@hookimpl
def classify_response(ctx: Context) -> list[str] | None:
    """Return ``[tag]`` when ``ctx.response`` is a refusal, else ``None``."""
    response = ctx.response
    if response is None:
        return None
    settings: Settings = ctx.settings
    if response.stop_reason == "refusal":
        return [settings.tag]
    phrases = settings._folded
    text = "\n".join(p.text for p in response.content if isinstance(p, TextPart))[:settings.max_chars]
    if not text:
        return None
    haystack = _normalise(text)
    return [settings.tag] if any(phrase in haystack for phrase in phrases) else None


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").casefold()
