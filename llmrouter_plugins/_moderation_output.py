"""The output half of ``moderation``: ``output_patterns`` checked against the reply's text, on
streams as it arrives (the stream ends with an error event) and on complete replies."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from llmrouter.models import BlockDelta, BlockStart, StreamError, StreamEvent, TextPart

DEFAULT_OUTPUT_MESSAGE = "The reply was blocked by the router's moderation policy."
DEFAULT_WINDOW = 1024


class OutputSettingsError(ValueError):
    """``output_patterns`` or ``output_window_chars`` is malformed."""


def output_patterns(*tables: dict[str, Any]) -> tuple[re.Pattern[str], ...]:
    """The compiled ``output_patterns`` of ``tables`` (config first, then the request's extras)."""
    sources: list[str] = []
    for table in tables:
        values = table.get("output_patterns", [])
        if isinstance(values, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise OutputSettingsError("moderation: 'output_patterns' must be a list of regular expressions")
        sources.extend(v for v in values if v not in sources)
    return _compile(tuple(sources))


@lru_cache(maxsize=64)
def _compile(sources: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for i, source in enumerate(sources):
        try:
            compiled.append(re.compile(source))
        except re.error as exc:
            raise OutputSettingsError(
                f"moderation: output_patterns[{i}]: invalid regular expression {source!r}: {exc}") from None
    return tuple(compiled)


def blocked_message(pattern: re.Pattern[str]) -> str:
    """The error message naming the output pattern that matched."""
    return f"reply blocked by moderation output pattern '{pattern.pattern}'"


class OutputModerator:
    """Checks streamed text as it arrives; the delta that completes a match is withheld and the
    stream ends with an ``invalid_request_error`` :class:`StreamError`.

    Each new delta is searched together with the last ``window`` characters before it, so a match
    may span deltas (a match longer than ``window`` may be missed); text already sent before the
    completing delta has reached the client.
    """

    def __init__(self, patterns: tuple[re.Pattern[str], ...], window: int) -> None:
        self.patterns = patterns
        self.window = window
        self.tail = ""
        self.ended = False

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        """Pass events on until a pattern matches; then the error, then nothing."""
        if self.ended:
            return []
        text = None
        if isinstance(event, BlockDelta):
            text = event.text
        elif isinstance(event, BlockStart) and isinstance(event.part, TextPart):
            text = event.part.text or None
        if text is None:
            return [event]
        scope = self.tail + text
        for pattern in self.patterns:
            if pattern.search(scope):
                self.ended = True
                return [StreamError(message=blocked_message(pattern), error_type="invalid_request_error")]
        self.tail = scope[-self.window:] if self.window > 0 else ""
        return [event]

    def finish(self) -> list[StreamEvent]:
        """Nothing is ever held."""
        return []
