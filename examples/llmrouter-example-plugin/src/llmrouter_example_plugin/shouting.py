"""Classifier ``shouting``: tags prompts written entirely in capital letters.

The classifier looks at the last user message only (the prompt the user just typed, not the
conversation so far). The prompt is shouting when it has at least ``min_letters`` letters that have
a case and every one of them is a capital, so ``"OK"`` or ``"NASA?"`` are not shouting but
``"WHY IS MY BUILD BROKEN"`` is.

Settings (``[classifiers.shouting]``):

``tag`` (default ``"shouting"``)
    The tag to add.
``min_letters`` (default ``8``)
    The fewest cased letters a prompt needs before it can count as shouting.

Example::

    [classifiers.shouting]
    min_letters = 12
"""

from __future__ import annotations

from typing import Any

from llmrouter import Context, hookimpl

DEFAULT_TAG = "shouting"
DEFAULT_MIN_LETTERS = 8


@hookimpl
def classify(ctx: Context) -> list[str] | None:
    """Return ``[tag]`` when the last user message is in capitals, else ``None``."""
    tag, min_letters = _read_settings(ctx.settings)
    if is_shouting(ctx.request.last_user_text(), min_letters):
        return [tag]
    return None


def is_shouting(text: str, min_letters: int = DEFAULT_MIN_LETTERS) -> bool:
    """Whether ``text`` has at least ``min_letters`` cased letters and all of them are capitals."""
    cased = [c for c in text if c.isupper() or c.islower()]
    return len(cased) >= max(min_letters, 1) and all(c.isupper() for c in cased)


def _read_settings(settings: dict[str, Any]) -> tuple[str, int]:
    """Validate the settings; a bad value raises, and the router logs and skips the classifier."""
    tag = settings.get("tag", DEFAULT_TAG)
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"shouting: 'tag' must be a non-empty string, got {tag!r}")
    min_letters = settings.get("min_letters", DEFAULT_MIN_LETTERS)
    if isinstance(min_letters, bool) or not isinstance(min_letters, int) or min_letters < 0:
        raise ValueError(f"shouting: 'min_letters' must be a whole number >= 0, got {min_letters!r}")
    return tag, min_letters
