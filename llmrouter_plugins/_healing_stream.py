"""The streaming half of ``response-healing``: holds the text of a JSON reply and releases it
repaired when its block ends."""

from __future__ import annotations

from collections.abc import Callable

from llmrouter.context import Context
from llmrouter.models import BlockDelta, BlockStart, BlockStop, StreamError, StreamEvent, TextPart


class HealingTransformer:
    """Holds each text block's deltas; at the block's end emits one delta with the repaired text
    (or the text as it came, when it needs no repair). A block longer than ``max_chars`` is
    released as it is and passes through from then on."""

    def __init__(self, ctx: Context, heal: Callable[[str], str | None], max_chars: int) -> None:
        self.ctx = ctx
        self.heal = heal
        self.max_chars = max_chars
        self.held: dict[int, list[str]] = {}
        self.sizes: dict[int, int] = {}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        """Hold text, release it repaired at the block's stop; everything else passes."""
        if isinstance(event, BlockStart) and isinstance(event.part, TextPart):
            self.held[event.index], self.sizes[event.index] = [], 0
            if event.part.text:
                self.held[event.index].append(event.part.text)
                self.sizes[event.index] = len(event.part.text)
                return [event.model_copy(update={"part": event.part.model_copy(update={"text": ""})})]
            return [event]
        if isinstance(event, BlockDelta) and event.text is not None and event.index in self.held:
            held = self.held[event.index]
            held.append(event.text)
            self.sizes[event.index] += len(event.text)
            if self.sizes[event.index] > self.max_chars:
                return self._release(event.index, repair=False)
            return []
        if isinstance(event, BlockStop) and event.index in self.held:
            return [*self._release(event.index, repair=True), event]
        if isinstance(event, StreamError):
            return [*self._release_all(repair=False), event]
        return [event]

    def finish(self) -> list[StreamEvent]:
        """Release whatever is still held (a stream cut off before its block ended), repaired."""
        return self._release_all(repair=True)

    def _release_all(self, *, repair: bool) -> list[StreamEvent]:
        return [delta for index in list(self.held) for delta in self._release(index, repair=repair)]

    def _release(self, index: int, *, repair: bool) -> list[StreamEvent]:
        text = "".join(self.held.pop(index))
        self.sizes.pop(index, None)
        if repair:
            healed = self.heal(text)
            if healed is not None:
                self.ctx.mark_modified("response-healing")
                text = healed
        return [BlockDelta(index=index, text=text)] if text else []
